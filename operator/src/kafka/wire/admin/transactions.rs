//! Transactions: listing and describing them, the producers with state on partitions, aborting
//! a hanging transaction, and fencing a transactional id.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::{
    self, DescribeProducersRequest, DescribeTransactionsRequest, InitProducerIdRequest,
    ListTransactionsRequest, ProducerId, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::wire::error::{check, code};
use crate::kafka::wire::request::topic_name;
use crate::kafka::wire::route::{
    COORDINATOR_TRANSACTION, FIRST_BACKOFF, MAX_BACKOFF, Target, invert,
};
use crate::kafka::wire::{
    ProducerState, TopicPartition, TransactionDescription, TransactionListing, WireClient,
    WireError,
};

impl WireClient {
    /// Every transactional id known to any transaction coordinator, whatever its state.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>, WireError> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut out = BTreeMap::new();
        for broker in metadata.brokers {
            let resource = format!("broker {}", broker.id);
            let resource = &resource;
            let response = self
                .retrying("ListTransactions", || async move {
                    let (_, response) = self
                        .call(Target::Node(broker.id), None, true, &|_| {
                            ListTransactionsRequest::default()
                        })
                        .await?;
                    check("ListTransactions", resource, response.error_code, None)?;
                    Ok(response)
                })
                .await?;
            for t in response.transaction_states {
                let transactional_id = t.transactional_id.0.to_string();
                out.insert(
                    transactional_id.clone(),
                    TransactionListing {
                        transactional_id,
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Describes transactions, asking each transactional id's coordinator.
    pub async fn describe_transactions(
        &self,
        ids: &[String],
    ) -> Result<Vec<TransactionDescription>, WireError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let api = "DescribeTransactions";
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_TRANSACTION, ids).await?;
            let mut out = Vec::new();
            for (coordinator, transactional_ids) in invert(&coordinators) {
                let (_, response) = self
                    .call(Target::Node(coordinator), None, true, &|_| {
                        DescribeTransactionsRequest::default().with_transactional_ids(
                            transactional_ids
                                .iter()
                                .map(|id| TransactionalId(StrBytes::from_string(id.to_string())))
                                .collect(),
                        )
                    })
                    .await?;
                for t in response.transaction_states {
                    check(api, &t.transactional_id.0, t.error_code, None)?;
                    let mut partitions: Vec<TopicPartition> = t
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic
                                .partitions
                                .iter()
                                .map(|&p| TopicPartition::new(topic.topic.0.to_string(), p))
                        })
                        .collect();
                    partitions.sort();
                    out.push(TransactionDescription {
                        transactional_id: t.transactional_id.0.to_string(),
                        coordinator,
                        state: t.transaction_state.to_string(),
                        producer_id: t.producer_id.0,
                        producer_epoch: t.producer_epoch,
                        timeout_ms: t.transaction_timeout_ms,
                        start_time_ms: t.transaction_start_time_ms,
                        partitions,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Producers with state on each partition, asking each partition's leader.
    pub async fn describe_producers(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Vec<ProducerState>>, WireError> {
        self.retrying("DescribeProducers", || async move {
            self.describe_producers_once(partitions).await
        })
        .await
    }

    async fn describe_producers_once(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Vec<ProducerState>>, WireError> {
        let api = "DescribeProducers";
        let grouped = self.by_leader(api, partitions.iter()).await?;
        let mut out = BTreeMap::new();
        for (leader, partitions) in grouped {
            let (_, response) = self
                .call(Target::Node(leader), None, true, &|_| {
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for tp in &partitions {
                        topics
                            .entry(tp.topic.as_str())
                            .or_default()
                            .push(tp.partition);
                    }
                    DescribeProducersRequest::default().with_topics(
                        topics
                            .into_iter()
                            .map(|(name, indexes)| {
                                messages::describe_producers_request::TopicRequest::default()
                                    .with_name(topic_name(name))
                                    .with_partition_indexes(indexes)
                            })
                            .collect(),
                    )
                })
                .await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check(api, &tp, p.error_code, p.error_message.as_ref())?;
                    let producers = p
                        .active_producers
                        .iter()
                        .map(|s| {
                            Ok(ProducerState {
                                producer_id: s.producer_id.0,
                                producer_epoch: i16::try_from(s.producer_epoch).map_err(|_| {
                                    WireError::protocol(format!(
                                        "producer epoch {} out of range",
                                        s.producer_epoch
                                    ))
                                })?,
                                last_sequence: s.last_sequence,
                                last_timestamp: s.last_timestamp,
                                coordinator_epoch: s.coordinator_epoch,
                                current_txn_start_offset: s.current_txn_start_offset,
                            })
                        })
                        .collect::<Result<Vec<_>, WireError>>()?;
                    out.insert(tp, producers);
                }
            }
        }
        Ok(out)
    }

    /// Aborts a producer's open transaction on one partition by writing an abort marker there
    /// (`WriteTxnMarkers` to the partition leader), exactly what Kafka's `Admin.abortTransaction`
    /// and `kafka-transactions.sh abort` do. Take `producer_epoch` and `coordinator_epoch` from
    /// [`WireClient::describe_producers`]. Meant for hanging transactions the coordinator does
    /// not know about; aborting a live transaction this way breaks its producer.
    pub async fn abort_transaction(
        &self,
        partition: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), WireError> {
        let api = "WriteTxnMarkers";
        self.retrying(api, || async move {
            let grouped = self.by_leader(api, std::iter::once(partition)).await?;
            for leader in grouped.into_keys() {
                let (_, response) = self
                    .call(Target::Node(leader), None, true, &|_| {
                        WriteTxnMarkersRequest::default().with_markers(vec![
                            messages::write_txn_markers_request::WritableTxnMarker::default()
                                .with_producer_id(ProducerId(producer_id))
                                .with_producer_epoch(producer_epoch)
                                .with_transaction_result(false)
                                .with_coordinator_epoch(coordinator_epoch)
                                .with_topics(vec![
                                    messages::write_txn_markers_request::WritableTxnMarkerTopic::default()
                                        .with_name(topic_name(&partition.topic))
                                        .with_partition_indexes(vec![partition.partition]),
                                ]),
                        ])
                    })
                    .await?;
                for marker in response.markers {
                    for topic in marker.topics {
                        for p in topic.partitions {
                            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            check(api, &tp, p.error_code, None)?;
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Fences `transactional_id`: `InitProducerId` for it, as a new instance of its producer
    /// would, so its coordinator bumps the epoch and aborts the transaction it had open; a
    /// process still using the id (a zombie) is fenced. Retries while the coordinator completes
    /// a previous transaction (`CONCURRENT_TRANSACTIONS`). Returns the new producer id and epoch.
    pub async fn fence_transactional_id(
        &self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16), WireError> {
        let api = "InitProducerId";
        let keys = [transactional_id.to_string()];
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = self
                .retrying(api, || {
                    let keys = &keys;
                    async move {
                        let coordinators = self
                            .find_coordinators(COORDINATOR_TRANSACTION, keys)
                            .await?;
                        let coordinator =
                            coordinators.get(transactional_id).copied().ok_or_else(|| {
                                WireError::protocol(format!(
                                    "no transaction coordinator for {transactional_id}"
                                ))
                            })?;
                        let (_, init) = self
                            .call(Target::Node(coordinator), None, true, &|_| {
                                InitProducerIdRequest::default()
                                    .with_transactional_id(Some(TransactionalId(
                                        StrBytes::from_string(transactional_id.to_string()),
                                    )))
                                    .with_transaction_timeout_ms(transaction_timeout_ms)
                            })
                            .await?;
                        check(api, transactional_id, init.error_code, None)?;
                        Ok((init.producer_id.0, init.producer_epoch))
                    }
                })
                .await;
            match attempt {
                Err(e)
                    if e.code() == Some(code::CONCURRENT_TRANSACTIONS)
                        && Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }
}
