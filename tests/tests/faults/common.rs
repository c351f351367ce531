//! What the fault tests share: the worker processes of a Pipeline, an input producer, an
//! independent reader and the count of what it read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exactly::api::Topic;
use exactly::kafka::{Isolation, OffsetSpec, TopicPartition, WireClient};
use exactly_testenv::{Environment, TestNamespace, eventually};

use crate::support::create;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

/// The broker of this binary's environment, shared by its tests: each holds a read guard for
/// its whole run; the two tests that restart the broker (the process and the pods kill tests)
/// hold the write guard throughout, so an outage or their load hits no other test half-way
/// (they finish first, or start after it).
pub static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The `exactly-worker` binary next to this test binary (`target/<profile>/exactly-worker`).
pub fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    let binary = dir.join("exactly-worker");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p exactly-worker` (make test does)",
        binary.display()
    );
    binary
}

/// A small deterministic generator, so a failing run can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// A seed from the clock (never 0, which xorshift cannot leave).
    pub fn seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 | 1)
            .unwrap_or(0x2545_f491_4f6c_dd1d)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The worker processes of one Pipeline, by ordinal.
pub struct Workers {
    binary: PathBuf,
    config: PathBuf,
    logs: PathBuf,
    running: Vec<Option<Child>>,
    starts: usize,
}

impl Workers {
    pub fn new(config: PathBuf, logs: PathBuf, count: usize) -> Workers {
        let mut workers = Workers {
            binary: worker_binary(),
            config,
            logs,
            running: (0..count).map(|_| None).collect(),
            starts: 0,
        };
        for ordinal in 0..count {
            workers.start(ordinal);
        }
        workers
    }

    pub fn start(&mut self, ordinal: usize) {
        self.starts += 1;
        let log = std::fs::File::create(
            self.logs
                .join(format!("worker-{ordinal}-{}.log", self.starts)),
        )
        .unwrap_or_else(|e| panic!("worker log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("worker log: {e}"));
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .arg("--ordinal")
            .arg(ordinal.to_string())
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .arg("--log-format")
            .arg("text")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.running[ordinal] = Some(child);
    }

    /// Freezes (SIGSTOP, `pause: true`) or thaws (SIGCONT) a worker, e.g. to look at its
    /// transaction while it cannot move on.
    pub fn freeze(&mut self, ordinal: usize, pause: bool) {
        if let Some(child) = &self.running[ordinal]
            && let Ok(pid) = libc::pid_t::try_from(child.id())
        {
            let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// SIGKILL: no chance to commit or abort; the open transaction stays until the restarted
    /// worker's `init_transactions` fences and aborts it.
    pub fn kill(&mut self, ordinal: usize) {
        if let Some(mut child) = self.running[ordinal].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM every worker and wait: each commits its open transaction and leaves.
    pub fn stop(&mut self) -> Vec<Option<i32>> {
        // A worker started a moment ago may not have installed its SIGTERM handler yet.
        std::thread::sleep(Duration::from_millis(500));
        let mut codes = Vec::new();
        for child in self.running.iter_mut().flatten() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        for slot in &mut self.running {
            if let Some(mut child) = slot.take() {
                let deadline = Instant::now() + Duration::from_secs(30);
                let code = loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break status.code(),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            let _ = child.kill();
                            break child.wait().ok().and_then(|s| s.code());
                        }
                    }
                };
                codes.push(code);
            }
        }
        codes
    }

    /// The transactions committed and aborted, summed over every worker run that stopped on
    /// SIGTERM (each logs its own counts as it stops; a killed run logs none).
    pub fn stopped_transaction_counts(&self) -> (u64, u64) {
        let field = |line: &str, name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in the stop line {line:?}"))
        };
        let mut totals = (0, 0);
        let entries = std::fs::read_dir(&self.logs)
            .unwrap_or_else(|e| panic!("{}: {e}", self.logs.display()));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("worker-") && name.ends_with(".log")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| l.contains("left the consumer group; stopped"))
            {
                totals.0 += field(line, "transactions_committed");
                totals.1 += field(line, "transactions_aborted");
            }
        }
        totals
    }

    /// Workers that exited on their own (a crash, a fencing), with their exit status.
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for (ordinal, slot) in self.running.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push((ordinal, status.to_string()));
            }
        }
        exited
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.running.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `count` keyed JSON records `{"id": n, "amount": ...}` at a steady pace (so that the
/// kills hit a pipeline with records in flight), with an idempotent producer: each input record
/// is in the log exactly once, through the broker restart too.
pub fn produce_input(bootstrap: String, topic: String, count: u64) -> std::thread::JoinHandle<()> {
    produce_records(bootstrap, topic, count, 1_000, |id| {
        format!("{{\"id\":{id},\"amount\":{}}}", id % 1000)
    })
}

/// Remembers the ids (from the keys `k<n>`) of records whose delivery failed.
#[derive(Default)]
struct FailedDeliveries(std::sync::Mutex<Vec<u64>>);

impl rdkafka::ClientContext for FailedDeliveries {}

impl rdkafka::producer::ProducerContext for FailedDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((_, message)) = result
            && let Some(id) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix('k'))
                .and_then(|n| n.parse().ok())
        {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(id);
        }
    }
}

/// Writes `count` records keyed `k<n>` with the value `value(n)`, pausing 100 ms after every
/// `pause_every` records, with an idempotent producer. A record whose delivery fails (a broker
/// restart under load can end an idempotent producer's session) is written again by a fresh
/// producer, so the input holds every id; an ambiguous failure may leave one twice, which the
/// checks allow for by counting against the input as read back ([`tally_against`]).
pub fn produce_records(
    bootstrap: String,
    topic: String,
    count: u64,
    pause_every: u64,
    value: impl Fn(u64) -> String + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let writing = produce_records_until(bootstrap, topic, count, pause_every, value, None);
    std::thread::spawn(move || {
        if writing.join().is_err() {
            panic!("the input producer panicked");
        }
    })
}

/// Writes the input of [`produce_input`] until `stop` is set (at most 10 000 000 records);
/// returns how many it wrote.
pub fn produce_input_until(
    bootstrap: String,
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    produce_records_until(
        bootstrap,
        topic,
        10_000_000,
        1_000,
        |id| format!("{{\"id\":{id},\"amount\":{}}}", id % 1000),
        Some(stop),
    )
}

/// [`produce_records`], stopping early once `stop` is set; returns how many ids it wrote.
fn produce_records_until(
    bootstrap: String,
    topic: String,
    count: u64,
    pause_every: u64,
    value: impl Fn(u64) -> String + Send + 'static,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut written = count;
        let mut ids: Box<dyn Iterator<Item = u64>> = Box::new(0..count);
        for round in 0..5 {
            let producer: ThreadedProducer<FailedDeliveries> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "120000")
                .create_with_context(FailedDeliveries::default())
                .unwrap_or_else(|e| panic!("input producer: {e}"));
            for (n, id) in ids.enumerate() {
                if round == 0
                    && stop
                        .as_ref()
                        .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
                {
                    written = id;
                    break;
                }
                let key = format!("k{id}");
                let value = value(id);
                let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        // The local queue is full (e.g. while the broker restarts): wait, retry.
                        Err((_, returned)) => {
                            record = returned;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                if round == 0 && n as u64 % pause_every == pause_every - 1 {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Err(e) = producer.flush(Duration::from_secs(180)) {
                eprintln!("flushing the input (round {round}): {e}");
            }
            let failed = std::mem::take(
                &mut *producer
                    .context()
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            if failed.is_empty() {
                return written;
            }
            eprintln!(
                "{} input records failed delivery (round {round}); writing them again",
                failed.len()
            );
            ids = Box::new(failed.into_iter());
        }
        panic!("the input producer could not deliver every record after 5 rounds");
    })
}

/// One record as an independent reader saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The key as text (`""` for none).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.value.as_deref()?).ok()
    }

    /// The first header `name` as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads every record of the `partitions` partitions of `topic` from the beginning with a fresh
/// consumer in `isolation` (`read_committed` or `read_uncommitted`), in the order read. Tests of
/// this binary run at once and one restarts the broker: errors of the connection are waited out
/// (the consumer reconnects), within the deadline.
/// The `"id"` of every record of `topic` a `read_committed` reader sees (each value is a JSON
/// object with a numeric `id`).
pub fn committed_ids(env: &Environment, topic: &str, partitions: i32) -> Vec<u64> {
    read_all(env, topic, partitions, "read_committed")
        .iter()
        .map(|r| {
            r.json()
                .and_then(|v| v["id"].as_u64())
                .unwrap_or_else(|| panic!("a record without an id: {r:?}"))
        })
        .collect()
}

pub fn read_all(env: &Environment, topic: &str, partitions: i32, isolation: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", format!("{topic}-check-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap_or_else(|e| panic!("checking consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut attempt = 0;
        let (_, high) = loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(watermarks) => break watermarks,
                Err(e) if attempt < 6 => {
                    eprintln!("watermarks of {topic}-{partition}: {e}; retrying");
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => panic!("watermarks of {topic}-{partition}: {e}"),
            }
        };
        ends.insert(partition, high);
    }
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = ends.iter().all(|(partition, end)| {
            consumer
                .position()
                .ok()
                .and_then(|p| {
                    p.find_partition(topic, *partition)
                        .and_then(|e| e.offset().to_raw())
                })
                .is_some_and(|at| at >= *end)
        });
        if done || *ends.values().max().unwrap_or(&0) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} ({isolation}) did not reach the end offsets {ends:?} in 180 s"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => records.push(Record {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                }),
            }),
            Some(Err(e)) => {
                eprintln!("reading {topic}: {e}; the consumer reconnects");
                std::thread::sleep(Duration::from_millis(200));
            }
            None => {}
        }
    }
    records
}

/// What an independent count of the output says.
#[derive(Debug, PartialEq, Eq)]
pub struct Tally {
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
}

/// No record lost, duplicated or unexpected.
pub const EXACTLY_ONCE: Tally = Tally {
    lost: 0,
    duplicated: 0,
    unexpected: 0,
};

/// Each record of the input (`input`: the ids read back from the input topic) should appear
/// exactly once in `ids`, the output: an id the input holds twice is expected twice.
pub fn tally_against(ids: &[u64], input: &[u64]) -> Tally {
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for id in input {
        *expected.entry(*id).or_default() += 1;
    }
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for id in ids {
        *seen.entry(*id).or_default() += 1;
    }
    let mut tally = Tally {
        lost: 0,
        duplicated: 0,
        unexpected: 0,
    };
    for (id, want) in &expected {
        let got = seen.get(id).copied().unwrap_or(0);
        tally.lost += want.saturating_sub(got);
        tally.duplicated += got.saturating_sub(*want);
    }
    tally.unexpected = seen.keys().filter(|id| !expected.contains_key(id)).count() as u64;
    tally
}

/// Each of `0..expected` should appear once in `ids`.
pub fn tally(ids: &[u64], expected: u64) -> Tally {
    tally_of(ids, &(0..expected).collect::<Vec<_>>())
}

/// Each of `expected` should appear once in `ids`.
pub fn tally_of(ids: &[u64], expected: &[u64]) -> Tally {
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for id in ids {
        *seen.entry(*id).or_default() += 1;
    }
    let wanted: std::collections::HashSet<u64> = expected.iter().copied().collect();
    Tally {
        lost: wanted.iter().filter(|id| !seen.contains_key(id)).count() as u64,
        duplicated: seen.values().map(|n| n - 1).sum(),
        unexpected: seen.keys().filter(|id| !wanted.contains(id)).count() as u64,
    }
}

/// The `pipeline.json` the operator rendered for Pipeline `pipeline` (the Secret
/// `<pipeline>-pipeline` the StatefulSet's pods mount), once it differs from `other_than`.
pub async fn rendered_config(
    client: &Client,
    ns: &TestNamespace,
    pipeline: &str,
    other_than: Option<&[u8]>,
) -> Vec<u8> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("{pipeline}-pipeline");
    eventually(
        "the worker configuration",
        Duration::from_secs(60),
        || async {
            let config = secrets
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .and_then(|s| s.data)
                .and_then(|d| d.get("pipeline.json").map(|b| b.0.clone()))
                .ok_or_else(|| "not rendered yet".to_string())?;
            if Some(config.as_slice()) == other_than {
                return Err("not rendered again yet".to_string());
            }
            Ok(config)
        },
    )
    .await
}

/// Creates Topics by resource name and Kafka name, with `partitions` each.
pub async fn create_topics(client: &Client, ns: &TestNamespace, topics: &[(&str, &str, i32)]) {
    for (name, topic, partitions) in topics {
        create::<Topic>(
            client,
            ns,
            name,
            serde_json::json!({"clusterRef": {"name": "local"}, "topicName": topic,
                "partitions": partitions}),
        )
        .await;
    }
}

/// Waits until `group` has committed up to the end of every partition of `input`.
pub async fn drained(w: &WireClient, group: &str, input: &str, partitions: i32, within: Duration) {
    let specs: Vec<(TopicPartition, OffsetSpec)> = (0..partitions)
        .map(|p| {
            (
                TopicPartition::new(input.to_string(), p),
                OffsetSpec::Latest,
            )
        })
        .collect();
    let ends = w
        .list_offsets(&specs, Isolation::ReadUncommitted)
        .await
        .unwrap_or_else(|e| panic!("input end offsets: {e}"));
    let deadline = Instant::now() + within;
    let last = loop {
        let state = match w.committed_offsets(group).await {
            Ok(committed) => {
                let behind: Vec<String> = ends
                    .iter()
                    .filter(|(tp, end)| committed.get(*tp).copied().unwrap_or(0) < **end)
                    .map(|(tp, end)| format!("{tp:?}: {:?}/{end}", committed.get(tp)))
                    .collect();
                if behind.is_empty() {
                    return;
                }
                behind.join(", ")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    panic!(
        "the pipeline did not consume the whole input within {within:?}; last state: {last}\n\
         open transactions on the group offsets' partitions: {}",
        pending_offset_transactions(w).await
    );
}

/// What holds pending (transactional) group offsets: each producer with a transaction open on a
/// partition of `__consumer_offsets`, and what the transaction coordinators say of the
/// transactional ids holding those producer ids (none: a hanging transaction).
async fn pending_offset_transactions(w: &WireClient) -> String {
    let partitions: Vec<TopicPartition> = (0..50)
        .map(|p| TopicPartition::new("__consumer_offsets".to_string(), p))
        .collect();
    let open: Vec<(TopicPartition, i64, i16, i64)> = match w.describe_producers(&partitions).await {
        Ok(by_partition) => by_partition
            .into_iter()
            .flat_map(|(tp, producers)| {
                producers
                    .into_iter()
                    .filter(|p| p.current_txn_start_offset >= 0)
                    .map(move |p| {
                        (
                            tp.clone(),
                            p.producer_id,
                            p.producer_epoch,
                            p.current_txn_start_offset,
                        )
                    })
            })
            .collect(),
        Err(e) => return format!("DescribeProducers failed: {e}"),
    };
    let listings = match w.list_transactions().await {
        Ok(l) => l,
        Err(e) => return format!("{open:?}; ListTransactions failed: {e}"),
    };
    let holders: Vec<String> = open
        .iter()
        .map(|(tp, pid, epoch, start)| {
            let ids: Vec<String> = listings
                .iter()
                .filter(|l| l.producer_id == *pid)
                .map(|l| format!("{} ({})", l.transactional_id, l.state))
                .collect();
            format!(
                "{tp:?} producer {pid} epoch {epoch} since offset {start}: held by {}",
                if ids.is_empty() {
                    "no transactional id (hanging)".to_string()
                } else {
                    ids.join(", ")
                }
            )
        })
        .collect();
    if holders.is_empty() {
        "none".into()
    } else {
        holders.join("; ")
    }
}

/// Host pids of the processes of pod `pod` whose command line starts with `command` (a
/// container's processes are visible from the host; the environment the chart and the operator
/// give them names the pod in `POD_NAME`).
pub fn pids_in_pod(pod: &str, command: &str) -> Vec<i32> {
    let needle = format!("POD_NAME={pod}");
    let command = format!("{command}\0");
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    cmdline.starts_with(command.as_bytes())
                        && environ.split(|b| *b == 0).any(|v| v == needle.as_bytes())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `exactly` binary next to this test binary.
pub fn operator_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("exactly"))
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p exactly --bins` (make test does)",
        binary.display()
    );
    binary
}

/// The operator as a process of its own (`exactly run`), watching one namespace, with the
/// environment's admin kubeconfig; each start logs to `<logs>/<name>-<n>.log`.
pub struct OperatorProcess {
    kubeconfig: PathBuf,
    namespace: String,
    logs: PathBuf,
    name: String,
    args: Vec<String>,
    vars: Vec<(String, String)>,
    child: Option<Child>,
    starts: usize,
}

impl OperatorProcess {
    pub fn new(env: &Environment, namespace: &str, logs: PathBuf, name: &str) -> OperatorProcess {
        OperatorProcess {
            kubeconfig: env.kubeconfig.clone(),
            namespace: namespace.to_string(),
            logs,
            name: name.to_string(),
            args: Vec::new(),
            vars: vec![("RUST_LOG".into(), "info".into())],
            child: None,
            starts: 0,
        }
    }

    /// Runs with these arguments too.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Runs with this environment variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts))
            .unwrap_or_else(|e| panic!("operator log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("operator log: {e}"));
        let child = Command::new(operator_binary())
            .args(["run", "--namespace", &self.namespace])
            .args(["--metrics-addr", "off", "--refresh-interval", "5s"])
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the operator: {e}"));
        self.child = Some(child);
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.logs.join(format!("{}-{start}.log", self.name))
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP, `pause: true`) or thaws (SIGCONT) the running process.
    pub fn freeze(&mut self, pause: bool) {
        if let Some(child) = &self.child
            && let Ok(pid) = libc::pid_t::try_from(child.id())
        {
            let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// The exit status once the process has ended, `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// What the current (last) run logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// Every line any run logged.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the broker's controller answered the CreateTopics requests naming one topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreatesSeen {
    /// Requests that created it.
    pub created: usize,
    /// Requests refused because it existed: nothing changed. A restarted operator sends one
    /// when its predecessor created the topic just before it stopped: brokers learn of a new
    /// topic from the controller's log (seconds later under load), so a describe cannot show it.
    pub existed: usize,
    /// Requests refused for another reason.
    pub refused: usize,
}

/// For each topic whose name starts with `prefix`, what the broker's controller answered the
/// CreateTopics requests naming it (validate-only requests aside), from the broker's log.
pub fn creates_seen(env: &Environment, prefix: &str) -> BTreeMap<String, CreatesSeen> {
    let log = std::fs::read_to_string(env.dir.join("logs").join("kafka.log"))
        .unwrap_or_else(|e| panic!("the broker's log: {e}"));
    creates_in(&log, prefix)
}

/// [`creates_seen`] of the broker log `log`.
fn creates_in(log: &str, prefix: &str) -> BTreeMap<String, CreatesSeen> {
    let mut seen: BTreeMap<String, CreatesSeen> = BTreeMap::new();
    for line in log.lines() {
        // `[time] INFO [QuorumController id=1] CreateTopics result(s): ...`
        if line.contains("Validate-only") {
            continue;
        }
        let Some((_, results)) = line.split_once("CreateTopics result(s): ") else {
            continue;
        };
        // `CreatableTopic(name='a', numPartitions=1, ...): SUCCESS, CreatableTopic(name='b', ...):
        // TOPIC_ALREADY_EXISTS (Topic 'b' already exists.), ...`
        for part in results.split("CreatableTopic(name='").skip(1) {
            let Some((name, rest)) = part.split_once('\'') else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let result = rest.split_once("): ").map(|(_, r)| r).unwrap_or_default();
            let entry = seen.entry(name.to_string()).or_default();
            if result.starts_with("SUCCESS") {
                entry.created += 1;
            } else if result.starts_with("TOPIC_ALREADY_EXISTS") {
                entry.existed += 1;
            } else {
                entry.refused += 1;
            }
        }
    }
    seen
}

/// A directory for one test's worker configuration and logs.
pub fn test_dir(ns: &TestNamespace) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exactly-faults-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn the_tally_finds_a_lost_and_a_duplicated_record() {
    assert_eq!(
        tally(&[0, 1, 1, 3], 4),
        Tally {
            lost: 1,
            duplicated: 1,
            unexpected: 0
        }
    );
    assert_eq!(
        tally_of(&[0, 5, 5, 7], &[0, 5, 6]),
        Tally {
            lost: 1,
            duplicated: 1,
            unexpected: 1
        }
    );
}

#[test]
fn each_create_topics_answer_of_the_broker_log_is_counted_for_its_topic() {
    let log = "\
[2026-12-07 14:53:53,079] INFO [QuorumController id=1] CreateTopics result(s): CreatableTopic(name='ns.t-73', numPartitions=1, replicationFactor=-1, assignments=[], configs=[]): SUCCESS, CreatableTopic(name='ns.t-74', numPartitions=1, replicationFactor=-1, assignments=[], configs=[]): SUCCESS (org.apache.kafka.controller.ReplicationControlManager)
[2026-12-07 14:53:53,081] INFO [QuorumController id=1] Replayed TopicRecord for topic ns.t-73 with topic ID 8jdNFc_YRE2NStTc9z8Ywg. (org.apache.kafka.controller.ReplicationControlManager)
[2026-12-07 14:53:54,000] INFO [QuorumController id=1] Validate-only CreateTopics result(s): CreatableTopic(name='ns.t-75', numPartitions=1, replicationFactor=-1, assignments=[], configs=[]): SUCCESS (org.apache.kafka.controller.ReplicationControlManager)
[2026-12-07 14:54:14,968] INFO [QuorumController id=1] CreateTopics result(s): CreatableTopic(name='ns.t-73', numPartitions=1, replicationFactor=-1, assignments=[], configs=[]): TOPIC_ALREADY_EXISTS (Topic 'ns.t-73' already exists.), CreatableTopic(name='ns.t-74', numPartitions=0, replicationFactor=-1, assignments=[], configs=[]): INVALID_PARTITIONS (Number of partitions was set to an invalid non-positive value.), CreatableTopic(name='other.t-1', numPartitions=1, replicationFactor=-1, assignments=[], configs=[]): SUCCESS (org.apache.kafka.controller.ReplicationControlManager)
";
    let seen = |created, existed, refused| CreatesSeen {
        created,
        existed,
        refused,
    };
    assert_eq!(
        creates_in(log, "ns.t-"),
        BTreeMap::from([
            ("ns.t-73".to_string(), seen(1, 1, 0)),
            ("ns.t-74".to_string(), seen(1, 0, 1)),
        ])
    );
}
