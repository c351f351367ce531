//! The cluster: `Metadata` (brokers, topics, partitions), the finalized feature levels, and the
//! configuration of brokers and topics (`DescribeConfigs`).

use std::collections::BTreeMap;

use kafka_protocol::messages::{self, ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::wire::conn::{API_VERSIONS_VERSION, CLIENT_SOFTWARE_NAME};
use crate::kafka::wire::error::{check, code};
use crate::kafka::wire::request::topic_name;
use crate::kafka::wire::route::Target;
use crate::kafka::wire::{
    BrokerMetadata, ClusterMetadata, ConfigEntry, ConfigSource, PartitionMetadata, TopicMetadata,
    WireClient, WireError,
};

/// `DescribeConfigs` resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// `DescribeConfigs` resource type of a broker.
const RESOURCE_BROKER: i8 = 4;

impl WireClient {
    /// Raw `Metadata` answer for `topics` (`None`: all); records the broker addresses.
    pub(in crate::kafka::wire) async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<messages::MetadataResponse, WireError> {
        let build = |version: i16| {
            let topics = topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(topic_name(name)))
                    })
                    .collect()
            });
            // Versions before 4 cannot say "do not create"; Kafka 4 does not speak those.
            MetadataRequest::default()
                .with_topics(topics)
                .with_allow_auto_topic_creation(version < 4)
        };
        let (_, response) = self.call_any(None, true, &build).await?;
        check("Metadata", "cluster", response.error_code, None)?;
        for b in &response.brokers {
            self.remember_node(b.node_id.0, &b.host, b.port);
        }
        Ok(response)
    }

    /// Cluster id, brokers and the given topics (`None`: every topic). Topics that do not exist
    /// are left out of the answer. Also refreshes the client's map of broker addresses.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata, WireError> {
        let response = self.fetch_metadata(topics).await?;
        let mut brokers: Vec<BrokerMetadata> = response
            .brokers
            .iter()
            .map(|b| BrokerMetadata {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);

        let mut out = Vec::new();
        for topic in response.topics {
            let name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            if topic.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                continue;
            }
            check("Metadata", &name, topic.error_code, None)?;
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            out.push(TopicMetadata {
                name,
                topic_id: kafka_uuid_string(topic.topic_id.as_bytes()),
                internal: topic.is_internal,
                partitions,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics: out,
        })
    }

    /// Cluster-wide finalized feature levels (`ApiVersions` v3+), e.g. `metadata.version` and
    /// `transaction.version`. Empty when the broker does not report them.
    pub async fn finalized_features(&self) -> Result<BTreeMap<String, i16>, WireError> {
        let build = |_| {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
        };
        let (version, response) = self
            .call(Target::Any, Some(API_VERSIONS_VERSION), true, &build)
            .await?;
        check("ApiVersions", "cluster", response.error_code, None)?;
        if version < 3 || response.finalized_features_epoch < 0 {
            return Ok(BTreeMap::new());
        }
        Ok(response
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.max_version_level))
            .collect())
    }

    /// Every configuration entry of broker `broker`, asked of that broker.
    pub async fn describe_broker_configs(
        &self,
        broker: i32,
    ) -> Result<BTreeMap<String, ConfigEntry>, WireError> {
        let name = broker.to_string();
        let mut configs = self
            .describe_configs(
                Target::Node(broker),
                RESOURCE_BROKER,
                std::slice::from_ref(&name),
            )
            .await?;
        Ok(configs.remove(&name).unwrap_or_default())
    }

    /// Every configuration entry of each topic, in one request. Topics that do not exist are left
    /// out of the answer.
    pub async fn describe_topic_configs(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, ConfigEntry>>, WireError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.describe_configs(Target::Any, RESOURCE_TOPIC, topics)
            .await
    }

    async fn describe_configs(
        &self,
        target: Target,
        resource_type: i8,
        names: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, ConfigEntry>>, WireError> {
        let build = |_| {
            DescribeConfigsRequest::default().with_resources(
                names
                    .iter()
                    .map(|name| {
                        messages::describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(resource_type)
                            .with_resource_name(StrBytes::from_string(name.clone()))
                            .with_configuration_keys(None)
                    })
                    .collect(),
            )
        };
        let (_, response) = self.call(target, None, true, &build).await?;
        let mut out = BTreeMap::new();
        for result in response.results {
            let name = result.resource_name.to_string();
            if resource_type == RESOURCE_TOPIC
                && result.error_code == code::UNKNOWN_TOPIC_OR_PARTITION
            {
                continue;
            }
            check(
                "DescribeConfigs",
                &name,
                result.error_code,
                result.error_message.as_ref(),
            )?;
            let entries = result
                .configs
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        ConfigEntry {
                            value: c.value.map(|v| v.to_string()),
                            source: ConfigSource::from_id(c.config_source),
                            read_only: c.read_only,
                            sensitive: c.is_sensitive,
                        },
                    )
                })
                .collect();
            out.insert(name, entries);
        }
        Ok(out)
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's text form of a UUID: URL-safe base64 without padding.
fn kafka_uuid_string(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trips() {
        let bytes: [u8; 16] = [
            0x0f, 0xa3, 0x51, 0x02, 0x99, 0x10, 0x4b, 0x7e, 0x80, 0x01, 0xff, 0x00, 0x12, 0x34,
            0x56, 0x78,
        ];
        let text = kafka_uuid_string(&bytes);
        assert_eq!(text.len(), 22);
        assert_eq!(text, "D6NRApkQS36AAf8AEjRWeA");
        assert_eq!(kafka_uuid_string(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
