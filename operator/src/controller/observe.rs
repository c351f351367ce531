//! One batched observation of a cluster serves every resource on it (DESIGN §6): the first
//! reconcile that needs delivery figures after the refresh interval has passed takes a
//! [`Snapshot`] of everything the cluster's ConsumerGroups and Producers need, in a fixed number
//! of admin requests per broker; every other reconcile in that interval reads it. Admin requests
//! grow with clusters and brokers, not with resources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::debug;

use super::lag::PartitionOffsets;
use crate::kafka::wire::{GroupDescription, ProducerState, TransactionDescription};
use crate::kafka::{KafkaAdmin, KafkaError, TopicDescription};

/// What the resources on one cluster want observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Kafka topics whose partitions' offsets (and producers) are needed.
    pub topics: BTreeSet<String>,
    /// Topics whose partitions' producer states are needed (hanging transactions).
    pub producer_topics: BTreeSet<String>,
    /// Consumer group ids.
    pub groups: BTreeSet<String>,
    /// `transactional.id`s.
    pub transactional_ids: BTreeSet<String>,
    /// Topics whose description and configuration set on the topic are needed (drift checks).
    pub topic_configs: BTreeSet<String>,
    /// Prefixes `p` of `transactional.id`s `p-<n>` (any ordinal `n`) the coordinators know,
    /// all described: a Pipeline's workers, including ordinals it no longer runs.
    pub transactional_id_prefixes: BTreeSet<String>,
}

/// Whether `id` is `<prefix>-<n>` or `<prefix>-<n>.<k>` (a worker's other producers) for
/// numbers `n` and `k`.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| match rest.split_once('.') {
            Some((n, k)) => digits(n) && digits(k),
            None => digits(rest),
        })
}

impl Interest {
    /// Whether `self` asks for nothing beyond `other`.
    pub fn covered_by(&self, other: &Interest) -> bool {
        self.topics.is_subset(&other.topics)
            && self.producer_topics.is_subset(&other.producer_topics)
            && self.groups.is_subset(&other.groups)
            && self.transactional_ids.is_subset(&other.transactional_ids)
            && self.topic_configs.is_subset(&other.topic_configs)
            && self
                .transactional_id_prefixes
                .is_subset(&other.transactional_id_prefixes)
    }

    /// Adds what `other` asks for.
    pub fn extend(&mut self, other: &Interest) {
        self.topics.extend(other.topics.iter().cloned());
        self.producer_topics
            .extend(other.producer_topics.iter().cloned());
        self.groups.extend(other.groups.iter().cloned());
        self.transactional_ids
            .extend(other.transactional_ids.iter().cloned());
        self.topic_configs
            .extend(other.topic_configs.iter().cloned());
        self.transactional_id_prefixes
            .extend(other.transactional_id_prefixes.iter().cloned());
    }
}

/// A (topic, partition) key.
pub type Partition = (String, i32);

/// One observation of a cluster.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// What it covers.
    pub interest: Interest,
    /// When it was taken.
    pub taken: Option<SystemTime>,
    /// Partitions of each topic of interest that exists.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Log start, log end and last stable offset of each partition of interest.
    pub offsets: BTreeMap<Partition, PartitionOffsets>,
    /// Groups of interest the coordinator knows.
    pub groups: BTreeMap<String, GroupDescription>,
    /// Committed offsets of each group of interest.
    pub committed: BTreeMap<String, BTreeMap<Partition, i64>>,
    /// The metadata committed with each of those offsets (empty when none): a Pipeline's
    /// workers keep their figures there.
    pub committed_metadata: BTreeMap<String, BTreeMap<Partition, String>>,
    /// Transactional ids of interest the coordinators know.
    pub transactions: BTreeMap<String, TransactionDescription>,
    /// Producer ids the transaction coordinators track (any transactional id, any state).
    pub tracked_producer_ids: BTreeSet<i64>,
    /// Active producers of each partition of the producer topics.
    pub producers: BTreeMap<Partition, Vec<ProducerState>>,
    /// Description of each topic of `topic_configs` that exists.
    pub topics: BTreeMap<String, TopicDescription>,
    /// Configuration set on each topic of `topic_configs` (broker defaults left out).
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Topics whose partitions the brokers would not answer for (offsets or producers), with
    /// the error: only the resources reading them wait; the rest of the snapshot holds.
    pub unanswered: BTreeMap<String, KafkaError>,
    /// Groups whose committed offsets the coordinator would not give, with the error: only the
    /// resources of those groups wait.
    pub unanswered_groups: BTreeMap<String, KafkaError>,
}

impl Snapshot {
    /// The first of `topics` the brokers would not answer for, with the error.
    pub fn unanswered_of<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a String>,
    ) -> Option<KafkaError> {
        topics
            .into_iter()
            .find_map(|t| self.unanswered.get(t))
            .cloned()
    }
}

/// Takes a snapshot: a fixed set of batched requests, whatever the number of resources.
pub async fn observe(admin: &KafkaAdmin, interest: &Interest) -> Result<Snapshot, KafkaError> {
    let mut snapshot = Snapshot {
        interest: interest.clone(),
        taken: Some(SystemTime::now()),
        ..Snapshot::default()
    };
    let wanted: Vec<String> = interest
        .topics
        .iter()
        .chain(&interest.producer_topics)
        .chain(&interest.topic_configs)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !wanted.is_empty() {
        let described = admin.describe_topics(&wanted).await?;
        snapshot.partitions = described
            .iter()
            .map(|(name, d)| (name.clone(), (0..d.partitions).collect()))
            .collect();
        snapshot.topics = described
            .into_iter()
            .filter(|(name, _)| interest.topic_configs.contains(name))
            .collect();
        let configured: Vec<String> = snapshot.topics.keys().cloned().collect();
        if !configured.is_empty() {
            snapshot.topic_configs = admin.dynamic_topic_configs(&configured).await?;
        }
        let all: Vec<Partition> = snapshot
            .partitions
            .iter()
            .filter(|(topic, _)| interest.topics.contains(*topic))
            .flat_map(|(topic, ps)| ps.iter().map(move |p| (topic.clone(), *p)))
            .collect();
        let (offsets, unanswered) = admin.partition_offsets_by_topic(&all).await;
        snapshot.offsets = offsets;
        snapshot.unanswered.extend(unanswered);
        let producer_partitions: Vec<Partition> = snapshot
            .partitions
            .iter()
            .filter(|(topic, _)| interest.producer_topics.contains(*topic))
            .flat_map(|(topic, ps)| ps.iter().map(move |p| (topic.clone(), *p)))
            .collect();
        if !producer_partitions.is_empty() {
            let (producers, unanswered) = admin.producers_by_topic(&producer_partitions).await;
            snapshot.producers = producers;
            snapshot.unanswered.extend(unanswered);
        }
    }
    if !interest.groups.is_empty() {
        let groups: Vec<String> = interest.groups.iter().cloned().collect();
        snapshot.groups = admin.describe_groups(&groups).await?;
        let (answered, failed) = admin.committed_of_each_group(&groups).await?;
        snapshot.unanswered_groups = failed;
        for (group, offsets) in answered {
            let (committed, metadata) = offsets
                .into_iter()
                .map(|(p, (offset, metadata))| ((p.clone(), offset), (p, metadata)))
                .unzip();
            snapshot.committed.insert(group.clone(), committed);
            snapshot.committed_metadata.insert(group, metadata);
        }
    }
    if !interest.transactional_ids.is_empty()
        || !interest.producer_topics.is_empty()
        || !interest.transactional_id_prefixes.is_empty()
    {
        let listed = admin.list_transactions().await?;
        snapshot.tracked_producer_ids = listed.iter().map(|t| t.producer_id).collect();
        let ids: Vec<String> = listed
            .into_iter()
            .map(|t| t.transactional_id)
            .filter(|id| {
                interest.transactional_ids.contains(id)
                    || interest
                        .transactional_id_prefixes
                        .iter()
                        .any(|p| has_prefix(id, p))
            })
            .collect();
        if !ids.is_empty() {
            snapshot.transactions = admin.describe_transactions(&ids).await?;
        }
    }
    Ok(snapshot)
}

struct Entry {
    /// The latest snapshot, with the moment its requests started.
    snapshot: Option<(Instant, Arc<Snapshot>)>,
}

/// The latest snapshot of each cluster, refreshed at most once per interval unless a resource
/// needs something it does not cover, or a change made through the operator invalidated it.
pub struct Observer {
    interval: Duration,
    clusters: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    /// When each cluster's snapshot was last invalidated: a snapshot whose requests started
    /// before then is stale. Kept apart from the entries so that invalidating never waits for
    /// a snapshot being taken (with 10 000 topics that takes seconds, and every Topic created
    /// meanwhile would wait).
    invalidated: Mutex<HashMap<String, Instant>>,
    /// Whether each cluster answered the last request seen ([`Observer::saw`]).
    reachable: Mutex<HashMap<String, bool>>,
    /// Where a cluster's key goes when a snapshot finds it answering again, or not any more:
    /// the KafkaCluster's own check runs then, rather than at its next resync.
    wakes: Option<futures::channel::mpsc::UnboundedSender<String>>,
}

impl Observer {
    /// An observer whose snapshots live for `interval`.
    pub fn new(interval: Duration) -> Self {
        Observer {
            interval,
            clusters: Mutex::new(HashMap::new()),
            invalidated: Mutex::new(HashMap::new()),
            reachable: Mutex::new(HashMap::new()),
            wakes: None,
        }
    }

    /// This observer, sending a cluster's key to `wakes` when a snapshot finds the cluster's
    /// reachability changed.
    pub fn waking(mut self, wakes: futures::channel::mpsc::UnboundedSender<String>) -> Self {
        self.wakes = Some(wakes);
        self
    }

    /// Records whether `cluster` answered a request, from its outcome (a refusal is an answer;
    /// other failures, such as a client configuration that cannot be used, say nothing); true
    /// when that differs from what was last recorded (or nothing was).
    pub fn saw<T>(&self, cluster: &str, outcome: &Result<T, KafkaError>) -> bool {
        let reachable = match outcome {
            Ok(_) | Err(KafkaError::Refused { .. }) => true,
            Err(KafkaError::Unreachable { .. }) => false,
            Err(_) => return false,
        };
        let mut seen = self
            .reachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.insert(cluster.to_string(), reachable) != Some(reachable)
    }

    /// [`Observer::saw`] for a snapshot's outcome, waking the cluster's check on a change.
    fn saw_snapshot(&self, cluster: &str, outcome: &Result<Snapshot, KafkaError>) {
        if self.saw(cluster, outcome)
            && let Some(wakes) = &self.wakes
        {
            debug!(cluster, "cluster reachability changed");
            let _ = wakes.unbounded_send(cluster.to_string());
        }
    }

    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn entry(&self, cluster: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut clusters = self
            .clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clusters
            .entry(cluster.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Entry { snapshot: None })))
            .clone()
    }

    /// A snapshot of `cluster` covering `mine`, no older than the interval. When a new one is
    /// needed it covers `everyone()` (what every resource on the cluster needs) too, so the
    /// other resources find theirs in it. Concurrent callers wait for one refresh.
    pub async fn snapshot(
        &self,
        cluster: &str,
        admin: &KafkaAdmin,
        mine: &Interest,
        everyone: impl FnOnce() -> Interest,
    ) -> Result<Arc<Snapshot>, KafkaError> {
        let entry = self.entry(cluster);
        let mut entry = entry.lock().await;
        let invalidated = self.invalidated_at(cluster);
        if let Some((taken, snapshot)) = &entry.snapshot
            && taken.elapsed() < self.interval
            && invalidated.is_none_or(|at| *taken > at)
            && mine.covered_by(&snapshot.interest)
        {
            return Ok(snapshot.clone());
        }
        let mut interest = everyone();
        interest.extend(mine);
        let started = Instant::now();
        let outcome = observe(admin, &interest).await;
        self.saw_snapshot(cluster, &outcome);
        let snapshot = Arc::new(outcome?);
        debug!(
            cluster,
            topics = interest.topics.len(),
            groups = interest.groups.len(),
            transactional_ids = interest.transactional_ids.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "observed cluster"
        );
        entry.snapshot = Some((started, snapshot.clone()));
        Ok(snapshot)
    }

    fn invalidated_at(&self, cluster: &str) -> Option<Instant> {
        self.invalidated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(cluster)
            .copied()
    }

    /// Marks the snapshot of `cluster` stale (one being taken too), so the next reader sees a
    /// change the operator just made. Never waits.
    pub async fn invalidate(&self, cluster: &str) {
        self.invalidated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(cluster.to_string(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> Result<Snapshot, KafkaError> {
        Err(KafkaError::Unreachable {
            bootstrap: "kafka:9092".into(),
            message: "connect: Connection refused".into(),
        })
    }

    #[test]
    fn a_snapshot_wakes_the_cluster_check_only_when_reachability_changes() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let observer = Observer::new(Duration::from_secs(30)).waking(tx);
        let mut woken = |outcome: Result<Snapshot, KafkaError>| {
            observer.saw_snapshot("kafka:9092", &outcome);
            let mut keys = Vec::new();
            while let Ok(key) = rx.try_recv() {
                keys.push(key);
            }
            keys.len()
        };
        // The cluster's own check found it answering: a snapshot that agrees wakes nothing.
        assert!(observer.saw("kafka:9092", &Ok::<(), KafkaError>(())));
        assert_eq!(woken(Ok(Snapshot::default())), 0);
        assert_eq!(woken(unreachable()), 1);
        assert_eq!(woken(unreachable()), 0);
        // An interrupted call says nothing about reachability.
        assert_eq!(woken(Err(KafkaError::Interrupted("cancelled".into()))), 0);
        // A refusal is an answer: the brokers are back.
        let refused = KafkaError::Refused {
            operation: "ListOffsets",
            resource: "orders".into(),
            code: "NOT_LEADER_OR_FOLLOWER".into(),
        };
        assert_eq!(woken(Err(refused)), 1);
        assert_eq!(woken(Ok(Snapshot::default())), 0);
    }
}
