//! A bare producer, for tests only (cargo feature `test-support`): appends a transactional batch
//! that no transaction coordinator knows about, leaving a hanging transaction behind.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self, InitProducerIdRequest, ProduceRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::error::{broker_error, check, code};
use super::request::{duration_ms, topic_name};
use super::route::Target;
use super::{TopicPartition, WireClient, WireError};

/// Highest `Produce` version for a batch no coordinator knows: v12+ has the broker add the
/// partition to the transaction through the coordinator (KIP-890), whatever the verification
/// setting.
const UNTRACKED_PRODUCE_VERSION: i16 = 11;

impl WireClient {
    /// FOR TESTS AND DEMOS ONLY: leaves a hanging transaction on `partition`. Gets an idempotent
    /// producer id (`InitProducerId` without a transactional id) and appends `records` records
    /// as one transactional batch that no transaction coordinator knows about, so nothing will
    /// ever commit or abort it: the partition's last stable offset stays at the batch until
    /// [`WireClient::abort_transaction`] clears it. Returns the producer id and epoch.
    ///
    /// Brokers verify transactional appends against the coordinator unless
    /// `transaction.partition.verification.enable` is `false`; with verification on, the append
    /// fails with `INVALID_TXN_STATE` or similar.
    pub async fn write_untracked_transactional_batch(
        &self,
        partition: &TopicPartition,
        records: usize,
    ) -> Result<(i64, i16), WireError> {
        // A broker that just started answers COORDINATOR_LOAD_IN_PROGRESS for a moment.
        let init = self
            .retrying("InitProducerId", || async move {
                let (_, init) = self
                    .call(Target::Any, None, false, &|_| {
                        InitProducerIdRequest::default()
                            .with_transactional_id(None)
                            .with_transaction_timeout_ms(i32::MAX)
                    })
                    .await?;
                check(
                    "InitProducerId",
                    "idempotent producer",
                    init.error_code,
                    None,
                )?;
                Ok(init)
            })
            .await?;
        let (producer_id, producer_epoch) = (init.producer_id.0, init.producer_epoch);
        let batch = encode_batch(producer_id, producer_epoch, true, records)?;
        // Kafka refuses transactional batches in a Produce request without a transactional id;
        // this one is unknown to the coordinators.
        let transactional_id = format!("exactly-untracked-{producer_id}");
        // Produce v12+ makes the broker add the partition to the transaction itself (transaction
        // version 2), which needs a coordinator that knows the producer; v11 only verifies, and
        // only when `transaction.partition.verification.enable` is on.
        self.produce(
            partition,
            Some(&transactional_id),
            batch,
            Some(UNTRACKED_PRODUCE_VERSION),
        )
        .await?;
        Ok((producer_id, producer_epoch))
    }

    /// Appends an encoded record batch to `partition` with `acks=all`; returns its base offset.
    async fn produce(
        &self,
        partition: &TopicPartition,
        transactional_id: Option<&str>,
        batch: Bytes,
        max_version: Option<i16>,
    ) -> Result<i64, WireError> {
        let api = "Produce";
        let timeout_ms = duration_ms(self.request_timeout);
        let batch = &batch;
        self.retrying(api, || async move {
            let metadata = self
                .fetch_metadata(Some(std::slice::from_ref(&partition.topic)))
                .await?;
            let topic = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| *n.0 == *partition.topic));
            let leader = topic
                .and_then(|t| {
                    t.partitions
                        .iter()
                        .find(|p| p.partition_index == partition.partition)
                })
                .map(|p| p.leader_id.0);
            let leader = match leader {
                None => {
                    return Err(broker_error(
                        api,
                        partition,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                    ));
                }
                Some(leader) if leader < 0 => {
                    return Err(broker_error(api, partition, code::LEADER_NOT_AVAILABLE));
                }
                Some(leader) => leader,
            };
            let topic_id = topic.map(|t| t.topic_id).unwrap_or_default();
            let (_, response) = self
                .call(Target::Node(leader), max_version, false, &|_| {
                    // The name is sent up to v12, the topic id from v13.
                    ProduceRequest::default()
                        .with_transactional_id(
                            transactional_id
                                .map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
                        )
                        .with_acks(-1)
                        .with_timeout_ms(timeout_ms)
                        .with_topic_data(vec![
                            messages::produce_request::TopicProduceData::default()
                                .with_name(topic_name(&partition.topic))
                                .with_topic_id(topic_id)
                                .with_partition_data(vec![
                                    messages::produce_request::PartitionProduceData::default()
                                        .with_index(partition.partition)
                                        .with_records(Some(batch.clone())),
                                ]),
                        ])
                })
                .await?;
            let mut base_offset = None;
            for topic in response.responses {
                for p in topic.partition_responses {
                    check(api, partition, p.error_code, p.error_message.as_ref())?;
                    base_offset = Some(p.base_offset);
                }
            }
            base_offset.ok_or_else(|| WireError::protocol("Produce response without the partition"))
        })
        .await
    }
}

/// One record batch of `records` records from a producer, sequence numbers from 0.
fn encode_batch(
    producer_id: i64,
    producer_epoch: i16,
    transactional: bool,
    records: usize,
) -> Result<Bytes, WireError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let records = (0..records)
        .map(|i| {
            let index = i32::try_from(i)
                .map_err(|_| WireError::protocol(format!("{records} records in one batch")))?;
            Ok(Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(index),
                sequence: index,
                timestamp: now,
                key: None,
                value: Some(Bytes::from(format!("exactly-wire-{index}"))),
                headers: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| WireError::Protocol(format!("encoding record batch: {e:#}")))?;
    Ok(buf.freeze())
}
