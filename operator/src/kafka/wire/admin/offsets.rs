//! Offsets of partitions (`ListOffsets`): log start, log end or last stable offset, or by time.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::{self, BrokerId, ListOffsetsRequest};

use crate::kafka::wire::error::check;
use crate::kafka::wire::request::{duration_ms, topic_name};
use crate::kafka::wire::route::Target;
use crate::kafka::wire::{Isolation, OffsetSpec, TopicPartition, WireClient, WireError};

impl WireClient {
    /// Looks up offsets, one request per partition leader. With [`OffsetSpec::Latest`],
    /// [`Isolation::ReadCommitted`] gives the last stable offset (the first offset of the oldest
    /// open transaction) and [`Isolation::ReadUncommitted`] the log end offset.
    pub async fn list_offsets(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
        isolation: Isolation,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        self.retrying("ListOffsets", || async move {
            self.list_offsets_once(requests, isolation).await
        })
        .await
    }

    async fn list_offsets_once(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
        isolation: Isolation,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        let specs: HashMap<&TopicPartition, OffsetSpec> =
            requests.iter().map(|(tp, spec)| (tp, *spec)).collect();
        let grouped = self
            .by_leader("ListOffsets", requests.iter().map(|(tp, _)| tp))
            .await?;
        let timeout_ms = duration_ms(self.request_timeout);
        let mut out = BTreeMap::new();
        for (leader, partitions) in grouped {
            let build = |version: i16| {
                let mut topics: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                for tp in &partitions {
                    let spec = specs.get(tp).copied().unwrap_or(OffsetSpec::Latest);
                    topics.entry(tp.topic.as_str()).or_default().push(
                        messages::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_timestamp(spec.timestamp()),
                    );
                }
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(match isolation {
                        Isolation::ReadUncommitted => 0,
                        Isolation::ReadCommitted => 1,
                    })
                    .with_timeout_ms(if version >= 10 { timeout_ms } else { 0 })
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                messages::list_offsets_request::ListOffsetsTopic::default()
                                    .with_name(topic_name(name))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
            };
            let (_, response) = self.call(Target::Node(leader), None, true, &build).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check("ListOffsets", &tp, p.error_code, None)?;
                    out.insert(tp, p.offset);
                }
            }
        }
        Ok(out)
    }
}
