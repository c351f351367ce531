//! A Pipeline delivers every record exactly once while its workers are killed and the broker
//! restarts. The workers are `exactly-worker` processes run with exactly the `pipeline.json` the
//! operator renders for the StatefulSet (on kwok no container runs); the check is independent: a
//! fresh `read_committed` reader counting every output record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exactly::api::{Pipeline, Topic};
use exactly::kafka::{Isolation, OffsetSpec, TopicPartition};
use exactly_testenv::{Environment, eventually, shared};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::support::{create, create_cluster, run_operator, wire};

/// Input records; each must come out exactly once.
const RECORDS: u64 = 200_000;
/// Partitions of the input and the output.
const PARTITIONS: i32 = 6;
/// Workers of the Pipeline.
const WORKERS: usize = 3;
/// SIGKILLs of a random worker while records flow.
const KILLS: usize = 24;

/// The `exactly-worker` binary next to this test binary (`target/<profile>/exactly-worker`).
fn worker_binary() -> PathBuf {
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
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The worker processes of one Pipeline, by ordinal.
struct Workers {
    binary: PathBuf,
    config: PathBuf,
    logs: PathBuf,
    running: Vec<Option<Child>>,
    starts: usize,
}

impl Workers {
    fn new(config: PathBuf, logs: PathBuf, count: usize) -> Workers {
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

    fn start(&mut self, ordinal: usize) {
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

    /// SIGKILL: no chance to commit or abort; the open transaction stays until the restarted
    /// worker's `init_transactions` fences and aborts it.
    fn kill(&mut self, ordinal: usize) {
        if let Some(mut child) = self.running[ordinal].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM every worker and wait: each commits its open transaction and leaves.
    fn stop(&mut self) -> Vec<Option<i32>> {
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

    /// Workers that exited on their own (a crash, a fencing), with their exit status.
    fn exited(&mut self) -> Vec<(usize, String)> {
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
fn produce_input(bootstrap: String, topic: String, count: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("delivery.timeout.ms", "300000")
            .set("message.timeout.ms", "300000")
            .create()
            .unwrap_or_else(|e| panic!("input producer: {e}"));
        for id in 0..count {
            let key = format!("k{id}");
            let value = format!("{{\"id\":{id},\"amount\":{}}}", id % 1000);
            let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    // The local queue is full (e.g. while the broker restarts): wait and retry.
                    Err((_, returned)) => {
                        record = returned;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            if id % 1_000 == 999 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        producer
            .flush(Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("flushing the input: {e}"));
    })
}

/// Reads every record of `topic` from the beginning with a fresh consumer in `isolation`
/// (`read_committed` or `read_uncommitted`) and returns the `id` of each value, in order read.
fn read_all_ids(env: &Environment, topic: &str, isolation: &str) -> Vec<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", format!("{topic}-check-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap_or_else(|e| panic!("checking consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}-{partition}: {e}"));
        ends.insert(partition, high);
    }
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let mut ids = Vec::new();
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
            Some(Ok(message)) => {
                let value: serde_json::Value = message
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .unwrap_or_else(|| panic!("an output record that is not JSON: {message:?}"));
                let id = value["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("an output record without an id: {value}"));
                assert_eq!(
                    value["doubled"].as_u64(),
                    Some((id % 1000) * 2),
                    "the transform's output for {id}"
                );
                ids.push(id);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    ids
}

/// What an independent count of the output says.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    lost: u64,
    duplicated: u64,
    unexpected: u64,
}

/// Each of `0..expected` should appear once in `ids`.
fn tally(ids: &[u64], expected: u64) -> Tally {
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for id in ids {
        *seen.entry(*id).or_default() += 1;
    }
    Tally {
        lost: (0..expected).filter(|id| !seen.contains_key(id)).count() as u64,
        duplicated: seen.values().map(|n| n - 1).sum(),
        unexpected: seen.keys().filter(|id| **id >= expected).count() as u64,
    }
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_delivers_every_record_exactly_once_while_workers_are_killed_and_the_broker_restarts()
 {
    let env = shared();
    let ns = env.namespace("faults").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let input = ns.unique("orders");
    let output = ns.unique("charges");
    for (name, topic) in [("orders", &input), ("charges", &output)] {
        create::<Topic>(
            &client,
            &ns,
            name,
            serde_json::json!({"clusterRef": {"name": "local"}, "topicName": topic,
                "partitions": PARTITIONS}),
        )
        .await;
    }
    create::<Pipeline>(
        &client,
        &ns,
        "charging",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": WORKERS,
            "transform": {"type": "Jq", "jq": {"filter": "{id: .id, doubled: (.amount * 2)}"}},
        }),
    )
    .await;

    // Exactly the configuration the StatefulSet's pods mount.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let config = eventually(
        "the worker configuration",
        Duration::from_secs(60),
        || async {
            secrets
                .get_opt("charging-pipeline")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|s| s.data)
                .and_then(|d| d.get("pipeline.json").map(|b| b.0.clone()))
                .ok_or_else(|| "not rendered yet".to_string())
        },
    )
    .await;
    let dir = std::env::temp_dir().join(format!("exactly-faults-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, &config).unwrap_or_else(|e| panic!("{e}"));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(0x2545_f491_4f6c_dd1d);
    eprintln!(
        "fault schedule seed {seed:#x}; worker logs in {}",
        dir.display()
    );
    let mut rng = Rng(seed);
    let mut workers = Workers::new(config_path, dir.clone(), WORKERS);
    let producing = produce_input(env.bootstrap_servers.clone(), input.clone(), RECORDS);

    // Kill a random worker at random moments while records flow, restarting it at once (as the
    // StatefulSet would); restart the broker once, half-way.
    let faults = tokio::task::spawn_blocking(move || {
        for kill in 0..KILLS {
            std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
            let ordinal = rng.below(WORKERS as u64) as usize;
            workers.kill(ordinal);
            workers.start(ordinal);
            if kill == KILLS / 2 {
                env.restart_kafka(Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("restarting the broker: {e}"));
            }
        }
        workers
    });
    let mut workers = faults
        .await
        .unwrap_or_else(|e| panic!("the fault schedule: {e}"));
    tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));

    // Drained: the group committed every input offset (transactions that hold records do).
    let w = wire(env);
    let partitions: Vec<(TopicPartition, OffsetSpec)> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(input.clone(), p), OffsetSpec::Latest))
        .collect();
    let ends = w
        .list_offsets(&partitions, Isolation::ReadUncommitted)
        .await
        .unwrap_or_else(|e| panic!("input end offsets: {e}"));
    eventually(
        "the pipeline to consume the whole input",
        Duration::from_secs(240),
        || async {
            let committed = w
                .committed_offsets("charging")
                .await
                .map_err(|e| e.to_string())?;
            let behind: Vec<String> = ends
                .iter()
                .filter(|(tp, end)| committed.get(*tp).copied().unwrap_or(0) < **end)
                .map(|(tp, end)| format!("{tp:?}: {:?}/{end}", committed.get(tp)))
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join(", "))
            }
        },
    )
    .await;
    let exited = workers.exited();
    assert!(exited.is_empty(), "workers exited on their own: {exited:?}");
    let codes = workers.stop();
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "workers did not exit cleanly on SIGTERM: {codes:?}"
    );

    // The independent check.
    let committed_ids = read_all_ids(env, &output, "read_committed");
    let committed = tally(&committed_ids, RECORDS);
    let uncommitted_ids = read_all_ids(env, &output, "read_uncommitted");
    let uncommitted = tally(&uncommitted_ids, RECORDS);
    eprintln!(
        "{} kills, one broker restart: read_committed read {} records ({committed:?}); \
         read_uncommitted read {} ({uncommitted:?})",
        KILLS,
        committed_ids.len(),
        uncommitted_ids.len()
    );
    assert_eq!(
        committed,
        Tally {
            lost: 0,
            duplicated: 0,
            unexpected: 0
        },
        "read_committed must see every record exactly once"
    );
    // The kills hit open transactions: their aborted records are in the log, and the same count
    // finds them as duplicates when it reads uncommitted records (the check can fail).
    assert!(
        uncommitted.duplicated > 0,
        "no aborted record in the output: the kills never hit an open transaction"
    );

    // The Pipeline's own figures agree with that read: nothing left to consume, every input
    // record counted in once, and as many records out as the reader found.
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let read_out = i64::try_from(committed_ids.len()).unwrap_or(i64::MAX);
    let expected_in = i64::try_from(RECORDS).unwrap_or(i64::MAX);
    eventually(
        "the Pipeline's figures to agree",
        Duration::from_secs(60),
        || async {
            let p = pipelines.get("charging").await.map_err(|e| e.to_string())?;
            let s = p.status.unwrap_or_default();
            let figures = (s.total_lag, s.records_in, s.records_out, s.dead_lettered);
            if figures == (Some(0), Some(expected_in), Some(read_out), Some(0)) {
                Ok(())
            } else {
                Err(format!(
                    "(totalLag, recordsIn, recordsOut, deadLettered) = {figures:?}"
                ))
            }
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
