//! What the broker reports of a partitioned topic (`…/partitioned-stats?perPartition=true`):
//! per partition, its publishers and its subscriptions. Only the fields the operator reads are
//! kept; every one defaults, so a broker that leaves one out still parses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The stats of a partitioned topic, per partition (full partition name → stats).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PartitionedStats {
    #[serde(default)]
    pub partitions: BTreeMap<String, TopicStats>,
}

/// The stats of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TopicStats {
    #[serde(default)]
    pub publishers: Vec<PublisherStats>,
    #[serde(default)]
    pub subscriptions: BTreeMap<String, SubscriptionStats>,
}

/// One producer connected to a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherStats {
    #[serde(default)]
    pub producer_name: Option<String>,
}

/// A subscription on one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStats {
    /// Messages not acknowledged yet.
    #[serde(default)]
    pub msg_backlog: i64,
    /// Messages delivered and not acknowledged yet.
    #[serde(default)]
    pub unacked_messages: i64,
    /// `Exclusive`, `Shared`, `Failover` or `Key_Shared`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub consumers: Vec<ConsumerStats>,
    /// When the acknowledged position last moved (ms since the epoch; 0 never).
    #[serde(default)]
    pub last_mark_delete_advanced_timestamp: i64,
}

/// One consumer of a subscription on one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStats {
    #[serde(default)]
    pub consumer_name: Option<String>,
    /// `/host:port` as the broker sees the connection.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub unacked_messages: i64,
}

/// The internal stats of a partitioned topic, per partition: only the cursors' properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PartitionedInternalStats {
    #[serde(default)]
    pub partitions: BTreeMap<String, InternalStats>,
}

/// The internal stats of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct InternalStats {
    #[serde(default)]
    pub cursors: BTreeMap<String, CursorStats>,
}

/// One cursor of a partition's managed ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CursorStats {
    /// What was stored with the cursor's last mark-delete. The deduplication cursor
    /// ([`DEDUP_CURSOR`]) stores its snapshot here: producer name → highest sequence id
    /// persisted.
    #[serde(default)]
    pub properties: BTreeMap<String, i64>,
}

/// The cursor in which a broker snapshots its deduplication state.
pub const DEDUP_CURSOR: &str = "pulsar.dedup";

/// The partition index in a partition's full name (`…-partition-<n>`).
pub fn partition_index(partition: &str) -> Option<i32> {
    partition.rsplit_once("-partition-")?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brokers_stats_parse_with_the_fields_the_operator_reads() {
        let body = r#"{
          "msgRateIn": 0.0,
          "subscriptions": {"billing": {"msgBacklog": 7}},
          "partitions": {
            "persistent://shop/sales/orders-partition-0": {
              "publishers": [{"producerName": "w-0", "msgRateIn": 1.5}],
              "subscriptions": {
                "billing": {
                  "msgBacklog": 5, "unackedMessages": 2, "type": "Key_Shared",
                  "lastMarkDeleteAdvancedTimestamp": 1700000000000,
                  "consumers": [{"consumerName": "c1", "address": "/10.0.0.7:41234", "unackedMessages": 2}]
                }
              }
            },
            "persistent://shop/sales/orders-partition-1": {}
          }
        }"#;
        let stats: PartitionedStats = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        let p0 = &stats.partitions["persistent://shop/sales/orders-partition-0"];
        assert_eq!(p0.publishers[0].producer_name.as_deref(), Some("w-0"));
        let sub = &p0.subscriptions["billing"];
        assert_eq!((sub.msg_backlog, sub.unacked_messages), (5, 2));
        assert_eq!(sub.type_.as_deref(), Some("Key_Shared"));
        assert_eq!(sub.consumers[0].address.as_deref(), Some("/10.0.0.7:41234"));
        assert!(
            stats.partitions["persistent://shop/sales/orders-partition-1"]
                .subscriptions
                .is_empty()
        );
    }

    #[test]
    fn the_deduplication_snapshot_is_the_dedup_cursors_properties() {
        let body = r#"{"metadata": {"partitions": 1}, "partitions": {
            "persistent://a/b/t-partition-0": {"entriesAddedCounter": 1500, "cursors": {
                "pulsar.dedup": {"markDeletePosition": "9:999", "properties": {"w-0": 999}},
                "billing": {"markDeletePosition": "9:10"}}}}}"#;
        let stats: PartitionedInternalStats =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        let p0 = &stats.partitions["persistent://a/b/t-partition-0"];
        assert_eq!(p0.cursors[DEDUP_CURSOR].properties["w-0"], 999);
        assert!(p0.cursors["billing"].properties.is_empty());
    }

    #[test]
    fn the_partition_index_is_the_suffix_of_its_name() {
        assert_eq!(partition_index("persistent://a/b/t-partition-12"), Some(12));
        assert_eq!(partition_index("persistent://a/b/t"), None);
    }
}
