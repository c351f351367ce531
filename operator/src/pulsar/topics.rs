//! Topics on a Pulsar cluster ([`TopicAdmin`]): persistent, partitioned topics whose partitions
//! only grow, in a tenant and namespace created when missing. The topic policies the operator
//! manages are seen as a configuration map, so the Topic controller's planners (drift per
//! `driftPolicy` included) work on them as on Kafka topic configs:
//! - `deduplicationEnabled` — always `true`: the broker drops a message a producer sends again
//!   under the same name and sequence id, which is what makes a resend after a restart safe;
//! - `retentionTimeInMinutes` and `retentionSizeInMB` — from `spec.pulsar.retention`.

use tracing::info;

use super::admin::{PulsarAdmin, Retention, TopicName};
use super::error::PulsarError;
use crate::api::PulsarTopic;
use crate::backend::{
    CreateOutcome, Error, NewTopicRequest, System, TopicAdmin, TopicConfig, TopicDescription,
};

/// The topic policy that keeps deduplication on.
pub const DEDUPLICATION: &str = "deduplicationEnabled";
/// The retention policy's time, in minutes.
pub const RETENTION_MINUTES: &str = "retentionTimeInMinutes";
/// The retention policy's size, in megabytes.
pub const RETENTION_MB: &str = "retentionSizeInMB";

/// The policies a Topic declares on Pulsar, as configuration keys.
pub fn declared_policies(place: Option<&PulsarTopic>) -> TopicConfig {
    let mut policies = TopicConfig::from([(DEDUPLICATION.to_string(), "true".to_string())]);
    if let Some(r) = place.and_then(|p| p.retention) {
        policies.insert(RETENTION_MINUTES.into(), r.minutes.to_string());
        policies.insert(RETENTION_MB.into(), r.size_mb.to_string());
    }
    policies
}

/// The Topic backend of one Pulsar cluster.
pub struct PulsarTopics {
    admin: PulsarAdmin,
    /// The Pulsar cluster tenants the operator creates are allowed on.
    cluster_name: String,
}

impl PulsarTopics {
    pub fn new(admin: PulsarAdmin, cluster_name: String) -> Self {
        PulsarTopics {
            admin,
            cluster_name,
        }
    }

    /// The admin client.
    pub fn admin(&self) -> &PulsarAdmin {
        &self.admin
    }

    /// Creates the topic's tenant and namespace where they are missing.
    async fn ensure_namespace(&self, topic: &TopicName) -> Result<(), PulsarError> {
        if !self.admin.tenant_exists(&topic.tenant).await?
            && self
                .admin
                .create_tenant(&topic.tenant, std::slice::from_ref(&self.cluster_name))
                .await?
        {
            info!(tenant = %topic.tenant, cluster = %self.cluster_name, "created Pulsar tenant");
        }
        let namespace = topic.namespace_name();
        if !self
            .admin
            .namespaces(&topic.tenant)
            .await?
            .contains(&namespace)
            && self
                .admin
                .create_namespace(&topic.tenant, &topic.namespace)
                .await?
        {
            info!(%namespace, "created Pulsar namespace");
        }
        Ok(())
    }
}

fn topic_name(name: &str) -> Result<TopicName, Error> {
    TopicName::parse(name).ok_or_else(|| {
        Error::Pulsar(PulsarError::ClientConfig(format!(
            "'{name}' is not a topic name of the form persistent://tenant/namespace/topic"
        )))
    })
}

/// A whole number from a policy value.
fn number(key: &str, value: &str) -> Result<i64, Error> {
    value.parse().map_err(|_| {
        Error::Pulsar(PulsarError::ClientConfig(format!(
            "{key} must be a whole number, not '{value}'"
        )))
    })
}

impl TopicAdmin for PulsarTopics {
    fn system(&self) -> System {
        System::Pulsar
    }

    async fn describe(&self, name: &str) -> Result<Option<TopicDescription>, Error> {
        let topic = topic_name(name)?;
        Ok(self
            .admin
            .partitions(&topic)
            .await?
            .map(|partitions| TopicDescription {
                name: topic.to_string(),
                partitions,
                // Pulsar replicates per namespace (ensemble and quorums), not per topic.
                replication_factor: 0,
                topic_id: None,
            }))
    }

    async fn create(&self, request: &NewTopicRequest) -> Result<CreateOutcome, Error> {
        let topic = topic_name(&request.name)?;
        self.ensure_namespace(&topic).await?;
        Ok(
            if self
                .admin
                .create_partitioned(&topic, request.partitions)
                .await?
            {
                // Policies are applied by the caller's configuration plan.
                CreateOutcome::Created(None)
            } else {
                CreateOutcome::AlreadyExists
            },
        )
    }

    async fn grow_partitions(&self, name: &str, to: i32) -> Result<(), Error> {
        let topic = topic_name(name)?;
        Ok(self.admin.grow_partitions(&topic, to).await?)
    }

    async fn configs(&self, name: &str) -> Result<TopicConfig, Error> {
        let topic = topic_name(name)?;
        let mut config = TopicConfig::new();
        if let Some(on) = self.admin.deduplication(&topic).await? {
            config.insert(DEDUPLICATION.into(), on.to_string());
        }
        if let Some(r) = self.admin.retention(&topic).await? {
            config.insert(
                RETENTION_MINUTES.into(),
                r.retention_time_in_minutes.to_string(),
            );
            config.insert(RETENTION_MB.into(), r.retention_size_in_mb.to_string());
        }
        Ok(config)
    }

    async fn alter_configs(
        &self,
        name: &str,
        set: &TopicConfig,
        delete: &[String],
    ) -> Result<(), Error> {
        let topic = topic_name(name)?;
        if let Some(value) = set.get(DEDUPLICATION) {
            let on = match value.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(Error::Pulsar(PulsarError::ClientConfig(format!(
                        "{DEDUPLICATION} must be true or false, not '{other}'"
                    ))));
                }
            };
            self.admin.set_deduplication(&topic, Some(on)).await?;
        } else if delete.iter().any(|k| k == DEDUPLICATION) {
            self.admin.set_deduplication(&topic, None).await?;
        }
        // Retention is one policy of two numbers: set whole, from what is set now and what
        // changes.
        let retention_keys = [RETENTION_MINUTES, RETENTION_MB];
        if retention_keys.iter().any(|k| set.contains_key(*k)) {
            let current = self.admin.retention(&topic).await?.unwrap_or_default();
            let minutes = match set.get(RETENTION_MINUTES) {
                Some(v) => number(RETENTION_MINUTES, v)?,
                None => current.retention_time_in_minutes,
            };
            let size = match set.get(RETENTION_MB) {
                Some(v) => number(RETENTION_MB, v)?,
                None => current.retention_size_in_mb,
            };
            self.admin
                .set_retention(
                    &topic,
                    Some(Retention {
                        retention_time_in_minutes: minutes,
                        retention_size_in_mb: size,
                    }),
                )
                .await?;
        } else if retention_keys
            .iter()
            .any(|k| delete.iter().any(|d| d == *k))
        {
            self.admin.set_retention(&topic, None).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PulsarRetention;

    #[test]
    fn a_pulsar_topic_always_declares_deduplication_and_its_retention_when_given() {
        assert_eq!(
            declared_policies(None),
            TopicConfig::from([(DEDUPLICATION.into(), "true".into())])
        );
        let place = PulsarTopic {
            retention: Some(PulsarRetention {
                minutes: 60,
                size_mb: -1,
            }),
            ..PulsarTopic::default()
        };
        assert_eq!(
            declared_policies(Some(&place)),
            TopicConfig::from([
                (DEDUPLICATION.into(), "true".into()),
                (RETENTION_MINUTES.into(), "60".into()),
                (RETENTION_MB.into(), "-1".into()),
            ])
        );
    }
}
