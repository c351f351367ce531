//! `make bench-pipeline`: the Pipeline worker's copy throughput and end-to-end latency on the
//! environment's broker, next to the broker's raw rate and a Kafka Streams exactly_once_v2 copy.
//!
//! One run, one broker, one input: a topic of `--partitions` partitions holding `--records`
//! keyed records of `--record-size` bytes, written once before any mode runs. Then:
//!
//! - (a) raw: Kafka's own `ProducerPerformance` (same count and size, `acks=all`, into a topic
//!   of its own) and `ConsumerPerformance` (reading the input);
//! - (b) `exactly-worker` with `"guarantee": "AtLeastOnce"` (reported as not measured when the
//!   worker's `pipeline.json` has no such field);
//! - (c) `exactly-worker` exactly-once with `commitIntervalMs` = `--commit-interval-ms`, the rest
//!   of its `pipeline.json` as the operator renders it (so `commitMaxRecords` is the worker's
//!   default unless `--commit-max-records` says otherwise);
//! - (d) a Kafka Streams `builder.stream(in).to(out)` app with `processing.guarantee =
//!   exactly_once_v2` and the same commit interval (tools/bench/streams).
//!
//! (b), (c) and (d) each copy the same input to an output topic and a consumer group of their
//! own; each is timed from the moment its process starts to the moment its group's committed
//! input offsets cover the whole input. For (c) and (d) those offsets commit in the same
//! transaction as the output, so the output then holds every record, committed. Afterwards a
//! `read_committed` reader counts the output and checks every input record is there exactly once
//! (a benchmark of a copy that lost records would be worthless). They do so `--rounds` times,
//! in alternating order (b c d, d c b, ...), each round with fresh topics and group; a mode's
//! figures are those of its median round, and each round's rate is printed beside them.
//!
//! Latency of (c) and (d): a second phase on fresh topics, with the pipeline already running,
//! writes records live at `--latency-rate` per second for `--latency-seconds`; each record's
//! value carries the microsecond it was handed to the producer (its CreateTime is set at the same
//! moment), and a `read_committed` reader of the output records `now - that` for every record.
//!
//! The workers' own commit count and mean commit duration are read from their `/metrics`
//! before they stop, and the transactions in each output are counted from its markers.
//!
//! It measures and prints; it asserts nothing about speed. The table also goes, with the
//! conditions (cores, load before each mode, versions), to `--json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use exactly_testenv::process::Component;
use exactly_testenv::procfs::{clock_ticks, loadavg, process_cpu_seconds, process_memory_kib};
use exactly_testenv::{Environment, Options};
use exactly_worker::WorkerConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    about = "Benchmark the exactly-once Pipeline worker against Kafka's raw rate and Kafka Streams \
             exactly_once_v2 on the environment's broker"
)]
struct Args {
    /// Records in the input (each mode copies all of them).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Bytes of each record's value (at least 16: the sequence number and send time).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Worker processes of (b) and (c); Kafka Streams gets as many stream threads.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// Copies of the input by each of (b), (c) and (d), in alternating order (b c d, then
    /// d c b, ...); each mode's figures are those of its median round by rate, and every
    /// round's rate is printed (the machine's noise between runs is as large as the effects
    /// measured, so one copy each is no comparison).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Commit interval of (b), (c) and (d).
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u32,
    /// `commitMaxRecords` of (b) and (c) (default: the worker's own default).
    #[arg(long)]
    commit_max_records: Option<u32>,
    /// A `clientProperties` entry of (b) and (c), `KEY=VALUE` (repeatable; default: none, the
    /// worker as the operator renders it).
    #[arg(long = "worker-client-property", value_name = "KEY=VALUE")]
    worker_client_properties: Vec<String>,
    /// Records per second written during the latency phase.
    #[arg(long, default_value_t = 5_000)]
    latency_rate: u64,
    /// How long the latency phase writes.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Longest any one mode may take before it counts as failed.
    #[arg(long, default_value_t = 600)]
    mode_timeout_seconds: u64,
    /// The `exactly-worker` binary (default: `release/exactly-worker` in this binary's target
    /// directory, else the one next to this binary).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Classpath of the Kafka Streams copy app (default: built and cached by
    /// tools/bench/streams/build.sh).
    #[arg(long)]
    streams_classpath: Option<String>,
    /// JVM options of the Kafka Streams app.
    #[arg(long, default_value = "-Xms1g -Xmx1g", allow_hyphen_values = true)]
    streams_jvm_options: String,
    /// The repository root (for tools/bench/streams/build.sh).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Where configs, logs and Streams state go (replaced on each run).
    #[arg(long, default_value = "target/bench-pipeline")]
    work_dir: PathBuf,
    /// Where the results go as JSON.
    #[arg(long, default_value = "target/bench-pipeline.json")]
    json: PathBuf,
    /// Only these modes (comma-separated of a, b, c, d, latency; latency-c or latency-d for one
    /// of the two latency phases).
    #[arg(long, default_value = "a,b,c,d,latency")]
    modes: String,
}

type Error = Box<dyn std::error::Error>;

/// Sequence numbers of warm-up records start here, far above any measured one.
const WARMUP_BASE: u64 = 1 << 40;
const WARMUP_RECORDS: u64 = 200;
/// Pause between modes, so one's tail (log flushes, a JVM exiting) does not land in the next.
const SETTLE: Duration = Duration::from_secs(5);

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn say(text: impl AsRef<str>) {
    eprintln!("[bench] {}", text.as_ref());
}

fn run(args: Args) -> Result<(), Error> {
    if args.record_size < 16 {
        return Err("--record-size must be at least 16".into());
    }
    if args.records == 0
        || args.partitions < 1
        || args.workers < 1
        || args.latency_rate == 0
        || args.rounds == 0
    {
        return Err(
            "--records, --partitions, --workers, --latency-rate and --rounds must be positive"
                .into(),
        );
    }
    let modes: BTreeSet<String> = args.modes.split(',').map(|m| m.trim().into()).collect();
    let worker = match &args.worker {
        Some(path) => path.clone(),
        None => default_worker()?,
    };
    if !worker.exists() {
        return Err(format!(
            "{} not found: `cargo build --release -p exactly-worker` (make bench-pipeline does)",
            worker.display()
        )
        .into());
    }
    let streams_classpath = if ["d", "latency", "latency-d"]
        .iter()
        .any(|m| modes.contains(*m))
    {
        Some(match &args.streams_classpath {
            Some(cp) => cp.clone(),
            None => build_streams_app(&args.repo)?,
        })
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&args.work_dir);
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = std::fs::canonicalize(&args.work_dir)?;

    // The broker alone: nothing here needs an API server, and on two cores the control
    // plane's own background work (etcd, kube-apiserver, kwok) was noise in every mode.
    say("starting the environment (one Kafka broker, no Kubernetes control plane)");
    let env = Environment::start(Options {
        install_crds: false,
        real_node: false,
        kubernetes: false,
        ..Options::default()
    })?;
    let result = (|| {
        let mut bench = Bench::new(&env, &args, worker, streams_classpath, work_dir)?;
        bench.all(&modes)?;
        bench.report()
    })();
    if result.is_err() {
        env.record_failure("bench-pipeline");
    }
    env.shutdown();
    result
}

/// `release/exactly-worker` of the target directory this binary is in, else its neighbour.
fn default_worker() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("no directory of the current executable")?;
    let release = dir
        .parent()
        .map(|target| target.join("release/exactly-worker"));
    Ok(match release {
        Some(path) if path.exists() => path,
        _ => dir.join("exactly-worker"),
    })
}

/// Runs tools/bench/streams/build.sh (cached after the first build) and returns its classpath.
fn build_streams_app(repo: &Path) -> Result<String, Error> {
    let script = repo.join("tools/bench/streams/build.sh");
    say(format!(
        "building the Kafka Streams copy app ({})",
        script.display()
    ));
    let output = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let classpath = stdout.lines().last().unwrap_or("").trim().to_string();
    if classpath.is_empty() {
        return Err(format!("{} printed no classpath", script.display()).into());
    }
    Ok(classpath)
}

// ---------------------------------------------------------------------------------------------
// Machine and process figures

/// Busy and total CPU time of the whole machine so far, in seconds (all cores).
fn machine_cpu_seconds() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    ((total - idle) / clock_ticks(), total / clock_ticks())
}

/// CPU use of the machine, the broker and this process over one mode.
struct CpuWindow {
    started: Instant,
    machine_busy: f64,
    broker: f64,
    driver: f64,
    broker_pid: u32,
}

#[derive(Clone, Debug, Default)]
struct CpuUse {
    /// Cores busy on average over the window, everything on the machine.
    machine_cores: f64,
    /// Cores the broker used on average.
    broker_cores: f64,
    /// Cores this benchmark process used on average.
    driver_cores: f64,
}

impl CpuWindow {
    fn open(broker_pid: u32) -> CpuWindow {
        CpuWindow {
            started: Instant::now(),
            machine_busy: machine_cpu_seconds().0,
            broker: process_cpu_seconds(broker_pid).unwrap_or(0.0),
            driver: process_cpu_seconds(std::process::id()).unwrap_or(0.0),
            broker_pid,
        }
    }

    fn close(&self) -> CpuUse {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        CpuUse {
            machine_cores: (machine_cpu_seconds().0 - self.machine_busy) / secs,
            broker_cores: (process_cpu_seconds(self.broker_pid).unwrap_or(0.0) - self.broker)
                / secs,
            driver_cores: (process_cpu_seconds(std::process::id()).unwrap_or(0.0) - self.driver)
                / secs,
        }
    }
}

/// Memory and CPU of the processes of one pipeline, sampled while they run.
#[derive(Clone, Debug, Default)]
struct ProcessFigures {
    /// Largest sampled VmRSS (summed over the processes), KiB.
    peak_rss_kib: u64,
    /// VmHWM summed over the processes just before they were stopped, KiB.
    hwm_kib: u64,
    /// CPU seconds the processes used, up to just before they were stopped.
    cpu_seconds: f64,
}

impl ProcessFigures {
    fn sample(&mut self, processes: &[Component]) {
        let rss: u64 = processes
            .iter()
            .filter_map(|p| process_memory_kib(p.pid()))
            .map(|(rss, _)| rss)
            .sum();
        self.peak_rss_kib = self.peak_rss_kib.max(rss);
    }

    fn finish(&mut self, processes: &[Component]) {
        self.sample(processes);
        self.hwm_kib = processes
            .iter()
            .filter_map(|p| process_memory_kib(p.pid()))
            .map(|(_, hwm)| hwm)
            .sum();
        self.cpu_seconds = processes
            .iter()
            .filter_map(|p| process_cpu_seconds(p.pid()))
            .sum();
    }
}

fn stop_all(processes: &mut [Component]) {
    for p in processes.iter() {
        p.terminate();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in processes.iter_mut() {
        p.wait_or_kill(deadline);
    }
}

fn check_alive(processes: &mut [Component]) -> Result<(), Error> {
    for p in processes.iter_mut() {
        if let Some((_, status)) = p.exited() {
            return Err(format!(
                "{} (pid {}) exited ({status}); log {}, last lines:\n{}",
                p.name,
                p.pid(),
                p.log.display(),
                p.log_tail(25)
            )
            .into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Records

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A value template: pseudo-random bytes (xorshift), the same for every record.
fn value_template(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Writes the send time (µs since the epoch) and sequence number at the start of a value.
fn stamp(value: &mut [u8], seq: u64, sent_micros: u64) {
    value[0..8].copy_from_slice(&sent_micros.to_le_bytes());
    value[8..16].copy_from_slice(&seq.to_le_bytes());
}

/// (sequence number, send time) of a value written by [`stamp`].
fn read_stamp(value: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

impl Deliveries {
    fn check(&self, expected: u64) -> Result<(), Error> {
        let ok = self.ok.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        if ok != expected || failed > 0 {
            let first = self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(format!(
                "{ok} of {expected} records delivered, {failed} failed (first error: {first})"
            )
            .into());
        }
        Ok(())
    }
}

/// Sends one record, waiting (polling delivery reports) while the local queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    key: &[u8],
    value: &[u8],
    deadline: Instant,
) -> Result<(), Error> {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if Instant::now() > deadline {
                    return Err(
                        format!("producing to {topic}: queue full past the deadline").into(),
                    );
                }
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(format!("producing to {topic}: {e}").into()),
        }
    }
}

fn key_of(seq: u64) -> String {
    format!("{seq:012}")
}

// ---------------------------------------------------------------------------------------------
// Results

/// One throughput figure.
#[derive(Clone, Debug)]
struct Rate {
    records_per_second: f64,
    /// MiB of record values per second.
    mib_per_second: f64,
}

impl Rate {
    fn new(records: u64, record_size: usize, seconds: f64) -> Rate {
        let seconds = seconds.max(1e-6);
        Rate {
            records_per_second: records as f64 / seconds,
            mib_per_second: records as f64 * record_size as f64 / seconds / (1024.0 * 1024.0),
        }
    }

    fn from_records_per_second(rps: f64, record_size: usize) -> Rate {
        Rate {
            records_per_second: rps,
            mib_per_second: rps * record_size as f64 / (1024.0 * 1024.0),
        }
    }
}

/// One run of a Kafka perf tool.
#[derive(Clone, Debug)]
struct ToolRun {
    rate: Rate,
    /// The tool's own summary line.
    line: String,
    load_before: String,
    cpu: CpuUse,
}

/// (a): Kafka's own tools.
#[derive(Clone, Debug)]
struct RawResult {
    /// ProducerPerformance with librdkafka's batching (batch.size=1000000, linger.ms=5): the
    /// producer settings the worker runs with. The reference produce rate.
    produce: ToolRun,
    /// ProducerPerformance with the Java client's defaults (batch.size=16384, linger.ms=5).
    produce_java_defaults: ToolRun,
    /// ConsumerPerformance: nMsg.sec, its group join included.
    consume: ToolRun,
    /// ConsumerPerformance's rate without its group join (fetch.nMsg.sec).
    consume_fetch_only: Rate,
}

impl RawResult {
    /// A copy consumes and produces every record: with both sharing the machine, its time per
    /// record is at best the sum of the two (the harmonic combination of the rates).
    fn copy_harmonic(&self, record_size: usize) -> Rate {
        let p = self.produce.rate.records_per_second;
        let c = self.consume.rate.records_per_second;
        Rate::from_records_per_second(1.0 / (1.0 / p + 1.0 / c), record_size)
    }

    fn copy_min(&self, record_size: usize) -> Rate {
        Rate::from_records_per_second(
            self.produce
                .rate
                .records_per_second
                .min(self.consume.rate.records_per_second),
            record_size,
        )
    }
}

/// What a read_committed reader found in an output topic.
#[derive(Clone, Debug, Default)]
struct Verify {
    records: u64,
    distinct: u64,
    duplicates: u64,
    missing: u64,
    foreign: u64,
    /// Offsets in the output that hold no committed record: one transaction marker per
    /// partition a transaction wrote to (and aborted records, if any).
    other_offsets: u64,
}

impl Verify {
    /// Transactions that wrote the output, estimated as markers / partitions (at these sizes
    /// every transaction writes to every partition).
    fn transactions(&self, partitions: i32) -> f64 {
        self.other_offsets as f64 / f64::from(partitions.max(1))
    }

    fn summary(&self) -> String {
        if self.duplicates == 0 && self.missing == 0 && self.foreign == 0 {
            format!("{} records, each input record once", self.records)
        } else {
            format!(
                "{} records: {} distinct, {} duplicates, {} missing, {} not from the input",
                self.records, self.distinct, self.duplicates, self.missing, self.foreign
            )
        }
    }
}

/// (b), (c), (d): one copy of the whole input.
#[derive(Clone, Debug)]
struct CopyResult {
    load_before: String,
    /// Process start to the whole input committed.
    seconds: f64,
    /// Process start to the first committed output record.
    startup_seconds: f64,
    from_start: Rate,
    /// From the first committed output record to the whole input committed.
    steady: Rate,
    processes: ProcessFigures,
    /// The workers' own count and duration of commits (their /metrics), for (b) and (c).
    commits: Option<Commits>,
    cpu: CpuUse,
    verify: Verify,
}

/// The latency phase of (c) or (d).
#[derive(Clone, Debug)]
struct LatencyResult {
    load_before: String,
    sent: u64,
    received: u64,
    duplicates: u64,
    write_seconds: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    processes: ProcessFigures,
    /// The workers' own count and duration of commits (their /metrics), for (b) and (c).
    commits: Option<Commits>,
    cpu: CpuUse,
}

type Outcome<T> = Option<Result<T, String>>;

fn outcome<T>(result: Result<T, Error>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// The benchmark

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// (b)
    AtLeastOnce,
    /// (c)
    ExactlyOnce,
    /// (d)
    Streams,
}

impl Mode {
    fn tag(self) -> &'static str {
        match self {
            Mode::AtLeastOnce => "b",
            Mode::ExactlyOnce => "c",
            Mode::Streams => "d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::AtLeastOnce => "(b) worker at-least-once",
            Mode::ExactlyOnce => "(c) worker exactly-once",
            Mode::Streams => "(d) Kafka Streams exactly_once_v2",
        }
    }
}

struct Bench<'a> {
    env: &'a Environment,
    args: &'a Args,
    worker: PathBuf,
    streams_classpath: Option<String>,
    work_dir: PathBuf,
    broker_pid: u32,
    input: String,
    /// The `guarantee` value of at-least-once, or why (b) cannot run.
    guarantee: Result<Value, String>,
    started: Instant,
    fill: Option<(f64, String)>,
    raw: Outcome<RawResult>,
    /// Each mode's median round (or its first failure).
    copies: Vec<(Mode, Outcome<CopyResult>)>,
    /// Each mode's rate (records/s from start) in every round, in the order run.
    rounds: Vec<(Mode, Vec<f64>)>,
    latencies: Vec<(Mode, Outcome<LatencyResult>)>,
}

impl<'a> Bench<'a> {
    fn new(
        env: &'a Environment,
        args: &'a Args,
        worker: PathBuf,
        streams_classpath: Option<String>,
        work_dir: PathBuf,
    ) -> Result<Bench<'a>, Error> {
        let broker_pid = env
            .component_pids()
            .into_iter()
            .find(|(name, _)| *name == "kafka")
            .map(|(_, pid)| pid)
            .ok_or("no kafka process in the environment")?;
        let mut bench = Bench {
            env,
            args,
            worker,
            streams_classpath,
            work_dir,
            broker_pid,
            input: "bench.input".into(),
            guarantee: Err(String::new()),
            started: Instant::now(),
            fill: None,
            raw: None,
            copies: vec![
                (Mode::AtLeastOnce, None),
                (Mode::ExactlyOnce, None),
                (Mode::Streams, None),
            ],
            rounds: Vec::new(),
            latencies: vec![(Mode::ExactlyOnce, None), (Mode::Streams, None)],
        };
        bench.guarantee = bench.detect_guarantee();
        Ok(bench)
    }

    fn mode_timeout(&self) -> Duration {
        Duration::from_secs(self.args.mode_timeout_seconds)
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.env.bootstrap_servers)
            .set_log_level(RDKafkaLogLevel::Warning);
        config
    }

    fn all(&mut self, modes: &BTreeSet<String>) -> Result<(), Error> {
        self.create_topics(&[self.input.as_str()])?;
        self.fill_input()?;
        if modes.contains("a") {
            settle();
            self.raw = Some(outcome(self.raw_rates()));
            self.print_outcome("(a) raw", &self.raw);
        }
        let selected: Vec<Mode> = self
            .copies
            .iter()
            .map(|(mode, _)| *mode)
            .filter(|mode| modes.contains(mode.tag()))
            .collect();
        let mut runs: Vec<Vec<CopyResult>> = vec![Vec::new(); selected.len()];
        let mut failed: Vec<Option<String>> = vec![None; selected.len()];
        for round in 0..self.args.rounds {
            let mut order: Vec<usize> = (0..selected.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let mode = selected[index];
                if failed[index].is_some() {
                    continue;
                }
                settle();
                let label = format!(
                    "{} round {} of {}",
                    mode.label(),
                    round + 1,
                    self.args.rounds
                );
                let result = match (&self.guarantee, mode) {
                    (Err(why), Mode::AtLeastOnce) => Err(why.clone()),
                    _ => outcome(self.copy(mode, round)),
                };
                self.print_outcome(&label, &Some(result.clone()));
                match result {
                    Ok(r) => runs[index].push(r),
                    Err(e) => failed[index] = Some(e),
                }
            }
        }
        for (index, mode) in selected.into_iter().enumerate() {
            let rates = runs[index]
                .iter()
                .map(|r| r.from_start.records_per_second)
                .collect();
            self.rounds.push((mode, rates));
            let result = match failed[index].take() {
                Some(e) => Err(e),
                None => median_by(std::mem::take(&mut runs[index]), |r| {
                    r.from_start.records_per_second
                })
                .ok_or_else(|| "no round ran".to_string()),
            };
            if let Some(slot) = self.copies.iter_mut().find(|(m, _)| *m == mode) {
                slot.1 = Some(result);
            }
        }
        for index in 0..self.latencies.len() {
            let mode = self.latencies[index].0;
            if modes.contains("latency") || modes.contains(&format!("latency-{}", mode.tag())) {
                settle();
                let result = outcome(self.latency(mode));
                self.print_outcome(&format!("{} latency", mode.label()), &Some(result.clone()));
                self.latencies[index].1 = Some(result);
            }
        }
        Ok(())
    }

    fn print_outcome<T: std::fmt::Debug>(&self, what: &str, outcome: &Outcome<T>) {
        match outcome {
            Some(Ok(_)) => say(format!("{what}: done")),
            Some(Err(e)) => say(format!("{what}: not measured: {e}")),
            None => {}
        }
    }

    /// The `guarantee` value of at-least-once that `WorkerConfig` accepts (the worker binary
    /// is built from the same source), or why (b) cannot run.
    fn detect_guarantee(&self) -> Result<Value, String> {
        let value = json!("AtLeastOnce");
        self.parse_config(Some(&value))
            .map(|()| value)
            .map_err(|why| {
                format!(
                    "the worker's pipeline.json has no at-least-once guarantee yet (WorkerConfig \
                 refuses \"guarantee\": \"AtLeastOnce\": {why})"
                )
            })
    }

    fn parse_config(&self, guarantee: Option<&Value>) -> Result<(), String> {
        let config = self.worker_config("probe", "probe.in", "probe.out", guarantee);
        let parsed: WorkerConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        let problems = parsed.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "))
        }
    }

    fn worker_config(
        &self,
        tag: &str,
        input: &str,
        output: &str,
        guarantee: Option<&Value>,
    ) -> Value {
        let mut config = json!({
            "pipeline": format!("bench/{tag}"),
            "bootstrapServers": self.env.bootstrap_servers,
            "groupId": format!("bench.group.{tag}"),
            "inputTopics": [input],
            "startFrom": "Earliest",
            "transactionalIdPrefix": format!("bench-{tag}"),
            "commitIntervalMs": self.args.commit_interval_ms,
            "clientProperties": self.worker_client_properties(),
            "output": {"topics": {"out": output}, "defaultTopic": "out"},
            "transform": {"kind": "Passthrough"},
            "errorPolicy": {"kind": "Stop"},
        });
        if let Some(g) = guarantee {
            config["guarantee"] = g.clone();
        }
        if let Some(n) = self.args.commit_max_records {
            config["commitMaxRecords"] = n.into();
        }
        config
    }

    /// The `commitMaxRecords` the workers run with (the worker's default unless given).
    fn commit_max_records(&self) -> Option<u32> {
        let config = self.worker_config("probe", "probe.in", "probe.out", None);
        serde_json::from_value::<WorkerConfig>(config)
            .ok()
            .map(|c| c.commit_max_records)
    }

    fn worker_client_properties(&self) -> serde_json::Map<String, Value> {
        self.args
            .worker_client_properties
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), Value::from(v.trim())))
            .collect()
    }

    fn create_topics(&self, names: &[&str]) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = self.client().create()?;
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, self.args.partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics(&topics, &options))?;
        for result in results {
            result.map_err(|(topic, e)| format!("creating topic {topic}: {e}"))?;
        }
        // Wait until every partition has a leader (producers would retry, but timing should not
        // start on a topic still being set up).
        let consumer: BaseConsumer = self.client().create()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for name in names {
            loop {
                let ready = consumer
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|m| {
                        m.topics().iter().find(|t| t.name() == *name).map(|t| {
                            t.error().is_none()
                                && t.partitions().len() == self.args.partitions as usize
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
                    .unwrap_or(false);
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("topic {name} has no leaders after 60 s").into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn producer(&self, linger_ms: &str) -> Result<BaseProducer<Deliveries>, Error> {
        Ok(self
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", linger_ms)
            .set("queue.buffering.max.kbytes", "1048576")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Deliveries::default())?)
    }

    /// Writes the input once: keyed records, values stamped with their sequence number.
    fn fill_input(&mut self) -> Result<(), Error> {
        let load = loadavg();
        say(format!(
            "writing the input: {} records of {} B to {} ({} partitions; load {load})",
            self.args.records, self.args.record_size, self.input, self.args.partitions
        ));
        let producer = self.producer("5")?;
        let deadline = Instant::now() + self.mode_timeout();
        let started = Instant::now();
        let mut value = value_template(self.args.record_size);
        for seq in 0..self.args.records {
            stamp(&mut value, seq, now_micros());
            send(
                &producer,
                &self.input,
                key_of(seq).as_bytes(),
                &value,
                deadline,
            )?;
            if seq % 1024 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer.flush(Duration::from_secs(300))?;
        producer.poll(Duration::ZERO);
        let seconds = started.elapsed().as_secs_f64();
        producer.context().check(self.args.records)?;
        let end = self.end_offsets(&self.input, "read_uncommitted")?;
        if end.iter().sum::<i64>() != self.args.records as i64 {
            return Err(format!(
                "the input ends at {end:?}, not {} records",
                self.args.records
            )
            .into());
        }
        say(format!(
            "input written in {seconds:.1} s ({:.0} records/s); per partition: {end:?}",
            self.args.records as f64 / seconds
        ));
        self.fill = Some((seconds, load));
        self.create_transaction_log()
    }

    /// Makes the broker create its transaction state log (`__transaction_state`), as any cluster
    /// that has seen a transaction has it: otherwise the first transactional client of the run
    /// (mode (c)) waits about half a second for its creation and the later ones do not.
    fn create_transaction_log(&self) -> Result<(), Error> {
        let started = Instant::now();
        let producer: BaseProducer<Deliveries> = self
            .client()
            .set("transactional.id", "bench.warm-up")
            .create_with_context(Deliveries::default())?;
        producer.init_transactions(Duration::from_secs(60))?;
        say(format!(
            "transaction state log ready ({:.1} s; a throwaway transactional producer)",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// End offsets of every partition (the last stable offset for read_committed).
    fn end_offsets(&self, topic: &str, isolation: &str) -> Result<Vec<i64>, Error> {
        let consumer: BaseConsumer = self
            .client()
            .set("isolation.level", isolation)
            .set("group.id", "bench.offsets")
            .create()?;
        let mut ends = Vec::new();
        for p in 0..self.args.partitions {
            ends.push(
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))?
                    .1,
            );
        }
        Ok(ends)
    }

    // -- (a) ------------------------------------------------------------------------------------

    fn java_tool(&self, name: &'static str, class: &str, args: &[String]) -> Result<String, Error> {
        let log = self.work_dir.join(format!("{name}.log"));
        let mut command = Command::new("java");
        command
            .arg("-cp")
            .arg(self.env.tools.kafka_classpath())
            .arg(class)
            .args(args);
        say(format!(
            "$ java -cp <kafka {}> {class} {}",
            self.env.kafka_version,
            args.join(" ")
        ));
        let mut tool = Component::spawn(name, command, &log)?;
        let deadline = Instant::now() + self.mode_timeout();
        loop {
            if let Some((ok, status)) = tool.exited() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if !ok {
                    return Err(format!("{class} failed ({status}):\n{}", tool.log_tail(20)).into());
                }
                return Ok(text);
            }
            if Instant::now() > deadline {
                tool.wait_or_kill(Instant::now());
                return Err(
                    format!("{class} did not finish within {:?}", self.mode_timeout()).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// ProducerPerformance of the run's count and size into a topic of its own, `acks=all`.
    fn producer_performance(
        &self,
        name: &'static str,
        topic: &str,
        what: &str,
        properties: &[&str],
    ) -> Result<ToolRun, Error> {
        self.create_topics(&[topic])?;
        let load_before = loadavg();
        say(format!(
            "(a) raw produce, {what}: ProducerPerformance (load {load_before})"
        ));
        let mut args: Vec<String> = vec![
            "--bootstrap-server".into(),
            self.env.bootstrap_servers.clone(),
            "--topic".into(),
            topic.into(),
            "--num-records".into(),
            self.args.records.to_string(),
            "--record-size".into(),
            self.args.record_size.to_string(),
            "--throughput".into(),
            "-1".into(),
            "--command-property".into(),
            "acks=all".into(),
        ];
        args.extend(properties.iter().map(|p| p.to_string()));
        let window = CpuWindow::open(self.broker_pid);
        let text = self.java_tool(name, "org.apache.kafka.tools.ProducerPerformance", &args)?;
        let cpu = window.close();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("records sent") && l.contains("records/sec"))
            .ok_or_else(|| format!("no summary line in ProducerPerformance's output:\n{text}"))?
            .trim()
            .to_string();
        let sent = line
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if sent < self.args.records {
            return Err(format!(
                "ProducerPerformance sent {sent} of {} records",
                self.args.records
            )
            .into());
        }
        let rps = number_before(&line, " records/sec")
            .ok_or_else(|| format!("cannot read records/sec from: {line}"))?;
        say(format!("    {line}"));
        Ok(ToolRun {
            rate: Rate::from_records_per_second(rps, self.args.record_size),
            line,
            load_before,
            cpu,
        })
    }

    fn raw_rates(&self) -> Result<RawResult, Error> {
        let size = self.args.record_size;
        let records = self.args.records;
        let produce = self.producer_performance(
            "producer-performance-batched",
            "bench.raw.batched",
            "librdkafka's batching",
            &["batch.size=1000000", "linger.ms=5"],
        )?;
        settle();
        let produce_java_defaults = self.producer_performance(
            "producer-performance-defaults",
            "bench.raw.defaults",
            "Java client defaults",
            &[],
        )?;

        settle();
        let load_before = loadavg();
        say(format!(
            "(a) raw consume: ConsumerPerformance of the input (load {load_before})"
        ));
        let window = CpuWindow::open(self.broker_pid);
        let text = self.java_tool(
            "consumer-performance",
            "org.apache.kafka.tools.ConsumerPerformance",
            &[
                "--bootstrap-server".into(),
                self.env.bootstrap_servers.clone(),
                "--topic".into(),
                self.input.clone(),
                "--num-records".into(),
                records.to_string(),
                "--group".into(),
                "bench.group.raw".into(),
                "--timeout".into(),
                "60000".into(),
            ],
        )?;
        let cpu = window.close();
        // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
        // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
        let (line, fields) = text
            .lines()
            .rev()
            .filter_map(|l| {
                let fields: Vec<f64> = l
                    .split(',')
                    .map(|f| f.trim().parse::<f64>().unwrap_or(f64::NAN))
                    .collect();
                (fields.len() >= 10 && fields[5].is_finite())
                    .then(|| (l.trim().to_string(), fields))
            })
            .next()
            .ok_or_else(|| format!("no result line in ConsumerPerformance's output:\n{text}"))?;
        say(format!("    {line}"));
        if (fields[4] as u64) < records {
            return Err(format!(
                "ConsumerPerformance read {} of {records} records",
                fields[4]
            )
            .into());
        }
        Ok(RawResult {
            produce,
            produce_java_defaults,
            consume: ToolRun {
                rate: Rate::from_records_per_second(fields[5], size),
                line,
                load_before,
                cpu,
            },
            consume_fetch_only: Rate::from_records_per_second(fields[9], size),
        })
    }

    // -- (b), (c), (d) --------------------------------------------------------------------------

    /// Starts the processes of `mode` copying `input` to `output`.
    fn start(
        &self,
        mode: Mode,
        tag: &str,
        input: &str,
        output: &str,
    ) -> Result<(Vec<Component>, Vec<String>), Error> {
        match mode {
            Mode::AtLeastOnce | Mode::ExactlyOnce => {
                let guarantee = match (mode, &self.guarantee) {
                    (Mode::AtLeastOnce, Ok(at_least)) => Some(at_least.clone()),
                    (Mode::AtLeastOnce, Err(why)) => return Err(why.clone().into()),
                    // Exactly-once is the default, which the operator leaves out of the JSON.
                    _ => None,
                };
                let config = self.worker_config(tag, input, output, guarantee.as_ref());
                let parsed: WorkerConfig = serde_json::from_value(config.clone())?;
                let problems = parsed.validate();
                if !problems.is_empty() {
                    return Err(
                        format!("the benchmark's pipeline.json is invalid: {problems:?}").into(),
                    );
                }
                let path = self.work_dir.join(format!("pipeline-{tag}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
                let mut processes = Vec::new();
                let mut metrics = Vec::new();
                for ordinal in 0..self.args.workers {
                    // A port free now (the worker binds it a moment later), so /metrics can be
                    // read: it has the worker's commit durations.
                    let port = std::net::TcpListener::bind((self.env.ports.ip.as_str(), 0))?
                        .local_addr()?
                        .port();
                    let address = format!("{}:{port}", self.env.ports.ip);
                    let mut command = Command::new(&self.worker);
                    command
                        .arg("--config")
                        .arg(&path)
                        .arg("--ordinal")
                        .arg(ordinal.to_string())
                        .arg("--metrics-addr")
                        .arg(&address)
                        .arg("--log-format")
                        .arg("text");
                    let log = self.work_dir.join(format!("worker-{tag}-{ordinal}.log"));
                    processes.push(Component::spawn("exactly-worker", command, &log)?);
                    metrics.push(address);
                }
                Ok((processes, metrics))
            }
            Mode::Streams => {
                let classpath = self
                    .streams_classpath
                    .as_ref()
                    .ok_or("no Kafka Streams classpath")?;
                let state = self.work_dir.join(format!("streams-state-{tag}"));
                std::fs::create_dir_all(&state)?;
                let mut command = Command::new("java");
                command
                    .args(self.args.streams_jvm_options.split_whitespace())
                    .arg("-cp")
                    .arg(classpath)
                    .arg("dev.exactly.bench.CopyApp")
                    .arg(&self.env.bootstrap_servers)
                    .arg(input)
                    .arg(output)
                    .arg(format!("bench.group.{tag}"))
                    .arg(self.args.workers.to_string())
                    .arg(self.args.commit_interval_ms.to_string())
                    .arg("exactly_once_v2")
                    .arg(&state);
                let log = self.work_dir.join(format!("streams-{tag}.log"));
                Ok((
                    vec![Component::spawn("kafka-streams", command, &log)?],
                    Vec::new(),
                ))
            }
        }
    }

    fn copy(&self, mode: Mode, round: u32) -> Result<CopyResult, Error> {
        // Names of its own in every round: a fresh output, group and transactional ids.
        let tag = &format!("{}{}", mode.tag(), round + 1);
        let output = format!("bench.output.{tag}");
        self.create_topics(&[output.as_str()])?;
        let group = format!("bench.group.{tag}");
        let target: i64 = self
            .end_offsets(&self.input, "read_uncommitted")?
            .iter()
            .sum();
        let offsets: BaseConsumer = self
            .client()
            .set("group.id", &group)
            // Not read_committed: that makes OffsetFetch wait for pending transactional commits.
            .set("isolation.level", "read_uncommitted")
            .create()?;
        let watermarks: BaseConsumer = self
            .client()
            .set("group.id", "bench.offsets")
            .set("isolation.level", "read_committed")
            .create()?;
        let mut input_partitions = TopicPartitionList::new();
        for p in 0..self.args.partitions {
            input_partitions.add_partition(&self.input, p);
        }

        let load_before = loadavg();
        say(format!(
            "{}: copying {} -> {output} (load {load_before})",
            mode.label(),
            self.input
        ));
        let window = CpuWindow::open(self.broker_pid);
        let started = Instant::now();
        let (mut processes, metrics) = self.start(mode, tag, &self.input, &output)?;
        let mut figures = ProcessFigures::default();
        let mut first_output: Option<Duration> = None;
        let mut last_report = Instant::now();
        let result = loop {
            if let Err(e) = check_alive(&mut processes) {
                break Err(e);
            }
            figures.sample(&processes);
            if first_output.is_none() {
                let any = (0..self.args.partitions).any(|p| {
                    watermarks
                        .fetch_watermarks(&output, p, Duration::from_secs(5))
                        .is_ok_and(|(_, high)| high > 0)
                });
                if any {
                    first_output = Some(started.elapsed());
                }
            }
            let committed: i64 = offsets
                .committed_offsets(input_partitions.clone(), Duration::from_secs(5))
                .map(|list| {
                    list.elements()
                        .iter()
                        .map(|e| match e.offset() {
                            Offset::Offset(n) => n,
                            _ => 0,
                        })
                        .sum()
                })
                .unwrap_or(0);
            if committed >= target {
                break Ok(started.elapsed());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                say(format!(
                    "    {:.0} s: {committed} of {target} input records committed",
                    started.elapsed().as_secs_f64()
                ));
            }
            if started.elapsed() > self.mode_timeout() {
                break Err(format!(
                    "{committed} of {target} input records committed after {:?}",
                    self.mode_timeout()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        figures.finish(&processes);
        let commits = worker_commits(&metrics);
        let cpu = window.close();
        stop_all(&mut processes);
        let elapsed = result?;
        let seconds = elapsed.as_secs_f64();
        let startup = first_output.unwrap_or(elapsed).as_secs_f64();
        say(format!(
            "    done in {seconds:.1} s (first committed output after {startup:.1} s); verifying \
             {output}"
        ));
        let verify = self.verify(&output)?;
        say(format!("    {output}: {}", verify.summary()));
        if verify.other_offsets > 0 {
            say(format!(
                "    {} offsets hold transaction markers: about {:.0} transactions (markers / \
                 partitions), {:.0} records and {:.0} ms each",
                verify.other_offsets,
                verify.transactions(self.args.partitions),
                self.args.records as f64 / verify.transactions(self.args.partitions).max(1.0),
                seconds * 1000.0 / verify.transactions(self.args.partitions).max(1.0)
            ));
        }
        let size = self.args.record_size;
        Ok(CopyResult {
            load_before,
            seconds,
            startup_seconds: startup,
            from_start: Rate::new(self.args.records, size, seconds),
            steady: Rate::new(self.args.records, size, seconds - startup),
            processes: figures,
            commits,
            cpu,
            verify,
        })
    }

    /// Reads `topic` with read_committed from the beginning to its end and checks each input
    /// record is there once.
    fn verify(&self, topic: &str) -> Result<Verify, Error> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("bench.verify.{topic}"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..self.args.partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let records = self.args.records as usize;
        let mut seen = vec![0u8; records];
        let mut result = Verify::default();
        let mut at_end = BTreeSet::new();
        let deadline = Instant::now() + self.mode_timeout();
        while at_end.len() < self.args.partitions as usize {
            if Instant::now() > deadline {
                return Err(
                    format!("reading {topic} back took over {:?}", self.mode_timeout()).into(),
                );
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Ok(message)) => {
                    result.records += 1;
                    match message.payload().and_then(read_stamp) {
                        Some((seq, _)) if (seq as usize) < records => {
                            let slot = &mut seen[seq as usize];
                            *slot = slot.saturating_add(1);
                        }
                        _ => result.foreign += 1,
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => return Err(format!("reading {topic}: {e}").into()),
            }
        }
        for &n in &seen {
            match n {
                0 => result.missing += 1,
                n => {
                    result.distinct += 1;
                    result.duplicates += u64::from(n - 1);
                }
            }
        }
        let end: i64 = self.end_offsets(topic, "read_uncommitted")?.iter().sum();
        result.other_offsets = (end.max(0) as u64).saturating_sub(result.records);
        Ok(result)
    }

    // -- latency --------------------------------------------------------------------------------

    fn latency(&self, mode: Mode) -> Result<LatencyResult, Error> {
        let tag = format!("latency-{}", mode.tag());
        let input = format!("bench.{tag}.input");
        let output = format!("bench.{tag}.output");
        self.create_topics(&[input.as_str(), output.as_str()])?;
        let total = self.args.latency_rate * self.args.latency_seconds;
        let load_before = loadavg();
        say(format!(
            "{} latency: {} records/s for {} s through {input} -> {output} (load {load_before})",
            mode.label(),
            self.args.latency_rate,
            self.args.latency_seconds
        ));

        let reader: BaseConsumer = self
            .client()
            .set("group.id", format!("bench.reader.{tag}"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..self.args.partitions {
            assignment.add_partition_offset(&output, p, Offset::Beginning)?;
        }
        reader.assign(&assignment)?;

        let warm = AtomicU64::new(0);
        let received = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let samples: Mutex<Vec<u64>> = Mutex::new(Vec::with_capacity(total as usize));
        let duplicates = AtomicU64::new(0);
        let producer = self.producer("1")?;
        let window = CpuWindow::open(self.broker_pid);
        let (mut processes, metrics) = self.start(mode, &tag, &input, &output)?;
        let mut figures = ProcessFigures::default();

        let result = std::thread::scope(|scope| -> Result<f64, Error> {
            scope.spawn(|| {
                let mut seen = vec![false; total as usize];
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let now = now_micros();
                    match message.payload().and_then(read_stamp) {
                        Some((seq, _)) if seq >= WARMUP_BASE => {
                            warm.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((seq, sent)) if (seq as usize) < seen.len() => {
                            if seen[seq as usize] {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            seen[seq as usize] = true;
                            samples
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(now.saturating_sub(sent));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
            let mut run = || -> Result<f64, Error> {
                let mut value = value_template(self.args.record_size);
                // Warm-up: the pipeline has joined its group and committed a transaction once
                // these are through.
                let deadline = Instant::now() + self.mode_timeout();
                for i in 0..WARMUP_RECORDS {
                    let seq = WARMUP_BASE + i;
                    stamp(&mut value, seq, now_micros());
                    send(&producer, &input, key_of(seq).as_bytes(), &value, deadline)?;
                }
                producer.flush(Duration::from_secs(30))?;
                let warm_deadline = Instant::now() + Duration::from_secs(180);
                while warm.load(Ordering::Relaxed) < WARMUP_RECORDS {
                    check_alive(&mut processes)?;
                    if Instant::now() > warm_deadline {
                        return Err("the warm-up records did not come through within 180 s".into());
                    }
                    producer.poll(Duration::from_millis(50));
                }
                // The measured phase: record i is due at i / rate seconds.
                let started = Instant::now();
                let mut last_sample = Instant::now();
                for seq in 0..total {
                    let due = started
                        + Duration::from_secs_f64(seq as f64 / self.args.latency_rate as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    stamp(&mut value, seq, now_micros());
                    send(&producer, &input, key_of(seq).as_bytes(), &value, deadline)?;
                    producer.poll(Duration::ZERO);
                    if last_sample.elapsed() > Duration::from_millis(200) {
                        last_sample = Instant::now();
                        figures.sample(&processes);
                        check_alive(&mut processes)?;
                    }
                }
                let write_seconds = started.elapsed().as_secs_f64();
                producer.flush(Duration::from_secs(60))?;
                let drain_deadline = Instant::now() + Duration::from_secs(120);
                while received.load(Ordering::Relaxed) < total {
                    check_alive(&mut processes)?;
                    if Instant::now() > drain_deadline {
                        return Err(format!(
                            "{} of {total} records came through within 120 s of the last write",
                            received.load(Ordering::Relaxed)
                        )
                        .into());
                    }
                    figures.sample(&processes);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(write_seconds)
            };
            let result = run();
            stop.store(true, Ordering::Relaxed);
            result
        });
        figures.finish(&processes);
        let commits = worker_commits(&metrics);
        let cpu = window.close();
        stop_all(&mut processes);
        let write_seconds = result?;
        producer.context().check(WARMUP_RECORDS + total)?;
        let mut samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());
        samples.sort_unstable();
        let ms = |q: f64| percentile(&samples, q) as f64 / 1000.0;
        let mean_ms = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64 / 1000.0;
        let result = LatencyResult {
            load_before,
            sent: total,
            received: samples.len() as u64,
            duplicates: duplicates.load(Ordering::Relaxed),
            write_seconds,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: samples.last().copied().unwrap_or(0) as f64 / 1000.0,
            mean_ms,
            processes: figures,
            commits,
            cpu,
        };
        say(format!(
            "    {} records, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            result.received, result.p50_ms, result.p99_ms, result.max_ms
        ));
        Ok(result)
    }

    // -- the report -----------------------------------------------------------------------------

    fn round_rates(&self, mode: Mode) -> &[f64] {
        self.rounds
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, rates)| rates.as_slice())
            .unwrap_or_default()
    }

    /// Every round's rate of each mode, and (c) / (b) of each round (the two ran next to each
    /// other, so the same neighbours' noise fell on both).
    fn rounds_text(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (mode, rates) in &self.rounds {
            if rates.is_empty() {
                continue;
            }
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let listed: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            lines.push(format!(
                "{} rounds: {} rec/s (min {min:.0}, max {max:.0}; the table has the median)",
                mode.label(),
                listed.join(", ")
            ));
        }
        let pairs: Vec<String> = self
            .round_rates(Mode::ExactlyOnce)
            .iter()
            .zip(self.round_rates(Mode::AtLeastOnce))
            .map(|(c, b)| format!("{:.2}", c / b))
            .collect();
        if !pairs.is_empty() {
            lines.push(format!("(c) / (b) round by round: {}", pairs.join(", ")));
        }
        lines
    }

    fn copy_result(&self, mode: Mode) -> Option<&CopyResult> {
        self.copies
            .iter()
            .find(|(m, _)| *m == mode)
            .and_then(|(_, r)| r.as_ref())
            .and_then(|r| r.as_ref().ok())
    }

    fn latency_result(&self, mode: Mode) -> Option<&LatencyResult> {
        self.latencies
            .iter()
            .find(|(m, _)| *m == mode)
            .and_then(|(_, r)| r.as_ref())
            .and_then(|r| r.as_ref().ok())
    }

    fn conditions(&self) -> Value {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            })
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let first_line = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text.lines().next().unwrap_or("").trim().to_string()
                })
                .unwrap_or_default()
        };
        let commit = first_line("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = Command::new("git")
            .args(["status", "--porcelain"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        json!({
            "cores": cores,
            "cpu": cpu_model,
            "memory": memory,
            "records": self.args.records,
            "recordSizeBytes": self.args.record_size,
            "keyBytes": key_of(0).len(),
            "partitions": self.args.partitions,
            "rounds": self.args.rounds,
            "commitIntervalMs": self.args.commit_interval_ms,
            "workerCommitMaxRecords": self.commit_max_records(),
            "workerClientProperties": self.worker_client_properties(),
            "workerProcesses": self.args.workers,
            "streamsThreads": self.args.workers,
            "latencyRate": self.args.latency_rate,
            "latencySeconds": self.args.latency_seconds,
            "kafka": self.env.kafka_version,
            "broker": "the environment's single KRaft node: java -Xms128m -Xmx512m \
                       -XX:+UseSerialGC -XX:TieredStopAtLevel=1, num.network.threads=2, \
                       num.io.threads=4, replication 1, on a loopback address",
            "librdkafka": rdkafka::util::get_rdkafka_version().1,
            "worker": format!("{} ({})", first_line(&self.worker.to_string_lossy(), &["--version"]), self.worker.display()),
            "java": first_line("java", &["-version"]),
            "streamsJvmOptions": self.args.streams_jvm_options,
            "commit": format!("{commit}{}", if dirty { " (work tree modified)" } else { "" }),
            "loadAtEnd": loadavg(),
            "totalSeconds": self.started.elapsed().as_secs_f64(),
        })
    }

    fn report(&self) -> Result<(), Error> {
        let size = self.args.record_size;
        let raw = self.raw.as_ref().and_then(|r| r.as_ref().ok());
        let reference_a = raw.map(|r| r.copy_harmonic(size));
        let b = self
            .copy_result(Mode::AtLeastOnce)
            .map(|r| r.from_start.clone());
        let d = self
            .copy_result(Mode::Streams)
            .map(|r| r.from_start.clone());
        let ratio = |rate: &Rate, reference: &Option<Rate>| -> String {
            reference
                .as_ref()
                .map(|r| format!("{:.2}", rate.records_per_second / r.records_per_second))
                .unwrap_or_else(|| "-".into())
        };
        let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);

        let conditions = self.conditions();
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(&mut out, String::new());
        line(
            &mut out,
            "bench-pipeline: exactly-worker vs Kafka's raw rate vs Kafka Streams exactly_once_v2"
                .into(),
        );
        line(
            &mut out,
            format!(
                "conditions: {} cores ({}), {}; {} records x {} B values ({}-byte keys), {} partitions, \
                 {} round(s) of (b) (c) (d), commit interval {} ms (worker commitMaxRecords {}{}), {} worker process(es) / \
                 Streams thread(s); Kafka {} (broker: the environment's, -Xmx512m, SerialGC, C1 \
                 only), librdkafka {}; {}; Streams JVM {}; worker {}; commit {}",
                conditions["cores"],
                conditions["cpu"].as_str().unwrap_or(""),
                conditions["memory"].as_str().unwrap_or(""),
                self.args.records,
                size,
                key_of(0).len(),
                self.args.partitions,
                self.args.rounds,
                self.args.commit_interval_ms,
                conditions["workerCommitMaxRecords"],
                if self.args.worker_client_properties.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", clientProperties {}",
                        conditions["workerClientProperties"]
                    )
                },
                self.args.workers,
                self.env.kafka_version,
                conditions["librdkafka"].as_str().unwrap_or(""),
                conditions["java"].as_str().unwrap_or(""),
                self.args.streams_jvm_options,
                conditions["worker"].as_str().unwrap_or(""),
                conditions["commit"].as_str().unwrap_or(""),
            ),
        );
        if let Some((seconds, load)) = &self.fill {
            line(
                &mut out,
                format!(
                    "input: written once by an rdkafka producer (acks=all, idempotent) in {seconds:.1} s \
                     ({:.0} records/s; load before {load})",
                    self.args.records as f64 / seconds
                ),
            );
        }
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "{:<36} {:>9} {:>7} {:>6} {:>6} {:>6} {:>8} {:>8} {:>9} {:>7} {:>9}  {}",
                "mode",
                "rec/s",
                "MiB/s",
                "/(b)",
                "/(d)",
                "/(a)",
                "p50",
                "p99",
                "RSS peak",
                "CPU s",
                "steady",
                "load before (1/5/15 min)"
            ),
        );
        let row = |out: &mut String,
                   label: &str,
                   rate: Option<&Rate>,
                   latency: Option<&LatencyResult>,
                   rss: Option<u64>,
                   cpu: Option<f64>,
                   steady: Option<&Rate>,
                   load: &str| {
            let (rps, mibs, rb, rd, ra) = match rate {
                Some(r) => (
                    format!("{:.0}", r.records_per_second),
                    format!("{:.1}", r.mib_per_second),
                    ratio(r, &b),
                    ratio(r, &d),
                    ratio(r, &reference_a),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
            };
            let (p50, p99) = latency
                .map(|l| (format!("{:.1} ms", l.p50_ms), format!("{:.1} ms", l.p99_ms)))
                .unwrap_or_else(|| ("-".into(), "-".into()));
            line(
                out,
                format!(
                    "{label:<36} {rps:>9} {mibs:>7} {rb:>6} {rd:>6} {ra:>6} {p50:>8} {p99:>8} {:>9} {:>7} {:>9}  {load}",
                    rss.map(mib).unwrap_or_else(|| "-".into()),
                    cpu.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
                    steady
                        .map(|s| format!("{:.0}", s.records_per_second))
                        .unwrap_or_else(|| "-".into()),
                ),
            );
        };
        let mut notes: Vec<String> = Vec::new();
        match &self.raw {
            Some(Ok(r)) => {
                row(
                    &mut out,
                    "(a) raw produce, batch.size 1 MB",
                    Some(&r.produce.rate),
                    None,
                    None,
                    None,
                    None,
                    &r.produce.load_before,
                );
                row(
                    &mut out,
                    "(a) raw produce, Java defaults",
                    Some(&r.produce_java_defaults.rate),
                    None,
                    None,
                    None,
                    None,
                    &r.produce_java_defaults.load_before,
                );
                row(
                    &mut out,
                    "(a) raw consume",
                    Some(&r.consume.rate),
                    None,
                    None,
                    None,
                    Some(&r.consume_fetch_only),
                    &r.consume.load_before,
                );
                row(
                    &mut out,
                    "(a) raw copy-equivalent (harmonic)",
                    reference_a.as_ref(),
                    None,
                    None,
                    None,
                    None,
                    "",
                );
            }
            Some(Err(e)) => notes.push(format!("(a) not measured: {e}")),
            None => notes.push("(a) not run (--modes)".into()),
        }
        for (mode, result) in &self.copies {
            let latency = self.latency_result(*mode);
            match result {
                Some(Ok(r)) => row(
                    &mut out,
                    mode.label(),
                    Some(&r.from_start),
                    latency,
                    Some(r.processes.hwm_kib.max(r.processes.peak_rss_kib)),
                    Some(r.processes.cpu_seconds),
                    Some(&r.steady),
                    &r.load_before,
                ),
                Some(Err(e)) => {
                    row(&mut out, mode.label(), None, latency, None, None, None, "");
                    notes.push(format!("{} not measured: {e}", mode.label()));
                }
                None => {
                    row(&mut out, mode.label(), None, latency, None, None, None, "");
                    notes.push(format!("{} not run (--modes)", mode.label()));
                }
            }
        }
        line(&mut out, String::new());
        let c = self.copy_result(Mode::ExactlyOnce);
        let target = |out: &mut String, what: &str, value: Option<f64>, goal: f64| {
            let text = match value {
                Some(v) => format!(
                    "{what}: {v:.2} (target >= {goal}: {})",
                    if v >= goal { "met" } else { "NOT met" }
                ),
                None => format!("{what}: not measured (target >= {goal})"),
            };
            line(out, text);
        };
        let c_rate = c.map(|r| r.from_start.records_per_second);
        target(
            &mut out,
            "(c) / (b)",
            c_rate
                .zip(b.as_ref())
                .map(|(c, b)| c / b.records_per_second),
            0.9,
        );
        target(
            &mut out,
            "(c) / (d)",
            c_rate
                .zip(d.as_ref())
                .map(|(c, d)| c / d.records_per_second),
            2.0,
        );
        target(
            &mut out,
            "(c) / (a) copy-equivalent, harmonic",
            c_rate
                .zip(reference_a.as_ref())
                .map(|(c, a)| c / a.records_per_second),
            0.7,
        );
        if let (Some(c), Some(r)) = (c_rate, raw) {
            line(
                &mut out,
                format!(
                    "(c) / min((a) produce, (a) consume): {:.2} (the stricter reading of the raw rate)",
                    c / r.copy_min(size).records_per_second
                ),
            );
        }
        line(&mut out, String::new());
        for text in self.rounds_text() {
            line(&mut out, text);
        }
        line(&mut out, String::new());
        for (mode, result) in &self.latencies {
            match result {
                Some(Ok(l)) => line(
                    &mut out,
                    format!(
                        "latency {}: {} of {} records at {} records/s over {:.1} s (load before {}): p50 {:.1} ms, \
                         p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms, mean {:.1} ms; \
                         {} duplicates; RSS peak {}{}",
                        mode.label(),
                        l.received,
                        l.sent,
                        self.args.latency_rate,
                        l.write_seconds,
                        l.load_before,
                        l.p50_ms,
                        l.p90_ms,
                        l.p99_ms,
                        l.p999_ms,
                        l.max_ms,
                        l.mean_ms,
                        l.duplicates,
                        mib(l.processes.hwm_kib.max(l.processes.peak_rss_kib)),
                        commits_text(&l.commits),
                    ),
                ),
                Some(Err(e)) => {
                    notes.push(format!("latency of {} not measured: {e}", mode.label()))
                }
                None => {}
            }
        }
        for (mode, result) in &self.copies {
            if let Some(Ok(r)) = result {
                line(
                    &mut out,
                    format!(
                        "{}: {:.1} s wall, first committed output after {:.1} s; output {}; {}; \
                         cores busy on average: machine {:.2}, broker {:.2}, pipeline {:.2}, this \
                         benchmark {:.2}, everything else {:.2}{}",
                        mode.label(),
                        r.seconds,
                        r.startup_seconds,
                        r.verify.summary(),
                        if r.verify.other_offsets == 0 {
                            "no transaction markers".to_string()
                        } else {
                            let txns = r.verify.transactions(self.args.partitions).max(1.0);
                            format!(
                                "about {txns:.0} transactions ({:.0} records, {:.0} ms each)",
                                self.args.records as f64 / txns,
                                r.seconds * 1000.0 / txns
                            )
                        },
                        r.cpu.machine_cores,
                        r.cpu.broker_cores,
                        r.processes.cpu_seconds / r.seconds.max(1e-3),
                        r.cpu.driver_cores,
                        (r.cpu.machine_cores
                            - r.cpu.broker_cores
                            - r.processes.cpu_seconds / r.seconds.max(1e-3)
                            - r.cpu.driver_cores)
                            .max(0.0),
                        commits_text(&r.commits),
                    ),
                );
            }
        }
        if let Some(r) = raw {
            for (what, run) in [
                ("(a) produce, batch.size 1 MB", &r.produce),
                ("(a) produce, Java defaults", &r.produce_java_defaults),
                ("(a) consume", &r.consume),
            ] {
                let cpu = &run.cpu;
                line(
                    &mut out,
                    format!(
                        "{what}: cores busy on average: machine {:.2}, broker {:.2} (the rest is the \
                         tool's JVM and everything else)",
                        cpu.machine_cores, cpu.broker_cores
                    ),
                );
            }
        }
        for note in &notes {
            line(&mut out, note.clone());
        }
        line(&mut out, String::new());
        line(
            &mut out,
            "method: rec/s = input records / (process start -> the group's committed input \
             offsets cover the whole input); for (c) and (d) those offsets commit in the output's \
             transaction, and a read_committed reader then checks the output holds each input \
             record once. 'steady' = the same from the first committed output record. (a) = the \
             tools' own records/sec: ProducerPerformance (acks=all) into a topic of its own, with \
             batch.size=1000000 linger.ms=5 (librdkafka's defaults, which the worker's producer \
             runs with; the reference) and with the Java client's defaults; ConsumerPerformance \
             reading the input (nMsg.sec, group join included; 'steady' = its fetch.nMsg.sec). \
             /(a) is against the harmonic combination 1/(1/produce + 1/consume), produce being \
             the batch.size 1 MB run. MiB/s counts record values. RSS peak = the larger of VmHWM \
             and the sampled VmRSS (summed over processes). CPU s = the pipeline's user+system \
             CPU seconds. Latency: a second phase on fresh topics with the pipeline running and \
             warmed up; records written live at a fixed rate; latency = the moment a \
             read_committed reader of the output sees the record - the send time carried in its \
             value (its CreateTime is the same instant)."
                .into(),
        );
        print!("{out}");

        let copy_json = |r: &CopyResult| {
            json!({
                "recordsPerSecond": r.from_start.records_per_second,
                "mibPerSecond": r.from_start.mib_per_second,
                "steadyRecordsPerSecond": r.steady.records_per_second,
                "seconds": r.seconds,
                "startupSeconds": r.startup_seconds,
                "rssPeakMiB": r.processes.hwm_kib.max(r.processes.peak_rss_kib) as f64 / 1024.0,
                "cpuSeconds": r.processes.cpu_seconds,
                "workerCommits": commits_json(&r.commits),
                "machineCores": r.cpu.machine_cores,
                "brokerCores": r.cpu.broker_cores,
                "loadBefore": r.load_before,
                "output": {
                    "records": r.verify.records,
                    "distinct": r.verify.distinct,
                    "duplicates": r.verify.duplicates,
                    "missing": r.verify.missing,
                    "foreign": r.verify.foreign,
                    "offsetsWithoutRecords": r.verify.other_offsets,
                    "transactionsEstimate": r.verify.transactions(self.args.partitions),
                },
            })
        };
        let latency_json = |l: &LatencyResult| {
            json!({
                "sent": l.sent,
                "received": l.received,
                "duplicates": l.duplicates,
                "writeSeconds": l.write_seconds,
                "p50Ms": l.p50_ms,
                "p90Ms": l.p90_ms,
                "p99Ms": l.p99_ms,
                "p999Ms": l.p999_ms,
                "maxMs": l.max_ms,
                "meanMs": l.mean_ms,
                "rssPeakMiB": l.processes.hwm_kib.max(l.processes.peak_rss_kib) as f64 / 1024.0,
                "cpuSeconds": l.processes.cpu_seconds,
                "workerCommits": commits_json(&l.commits),
                "machineCores": l.cpu.machine_cores,
                "loadBefore": l.load_before,
            })
        };
        let tool_json = |t: &ToolRun| {
            json!({
                "recordsPerSecond": t.rate.records_per_second,
                "mibPerSecond": t.rate.mib_per_second,
                "summary": t.line,
                "loadBefore": t.load_before,
                "machineCores": t.cpu.machine_cores,
                "brokerCores": t.cpu.broker_cores,
            })
        };
        let either = |r: &Outcome<Value>| match r {
            Some(Ok(v)) => v.clone(),
            Some(Err(e)) => json!({"error": e}),
            None => Value::Null,
        };
        let mut modes = serde_json::Map::new();
        modes.insert(
            "a".into(),
            either(&self.raw.as_ref().map(|r| {
                r.as_ref().map_err(Clone::clone).map(|r| {
                    json!({
                        "produce": tool_json(&r.produce),
                        "produceJavaDefaults": tool_json(&r.produce_java_defaults),
                        "consume": tool_json(&r.consume),
                        "consumeFetchOnlyRecordsPerSecond": r.consume_fetch_only.records_per_second,
                        "copyHarmonicRecordsPerSecond": r.copy_harmonic(size).records_per_second,
                        "copyMinRecordsPerSecond": r.copy_min(size).records_per_second,
                    })
                })
            })),
        );
        for (mode, result) in &self.copies {
            let mut value = either(
                &result
                    .as_ref()
                    .map(|r| r.as_ref().map_err(Clone::clone).map(copy_json)),
            );
            if let Some(Some(Ok(l))) = self
                .latencies
                .iter()
                .find(|(m, _)| m == mode)
                .map(|(_, r)| r.as_ref())
                && let Value::Object(map) = &mut value
            {
                map.insert("latency".into(), latency_json(l));
            } else if let Some(Some(Err(e))) = self
                .latencies
                .iter()
                .find(|(m, _)| m == mode)
                .map(|(_, r)| r.as_ref())
                && let Value::Object(map) = &mut value
            {
                map.insert("latency".into(), json!({"error": e}));
            }
            if let Value::Object(map) = &mut value {
                map.insert(
                    "roundsRecordsPerSecond".into(),
                    json!(self.round_rates(*mode)),
                );
            }
            modes.insert(mode.tag().into(), value);
        }
        let ratios = json!({
            "cOverB": c_rate.zip(b.as_ref()).map(|(c, b)| c / b.records_per_second),
            "cOverD": c_rate.zip(d.as_ref()).map(|(c, d)| c / d.records_per_second),
            "cOverAHarmonic": c_rate.zip(reference_a.as_ref()).map(|(c, a)| c / a.records_per_second),
            "cOverAMin": c_rate.zip(raw).map(|(c, r)| c / r.copy_min(size).records_per_second),
        });
        let document = json!({
            "conditions": conditions,
            "modes": modes,
            "ratios": ratios,
            "notes": notes,
            "table": out,
        });
        if let Some(parent) = self.args.json.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(
            &self.args.json,
            serde_json::to_string_pretty(&document)? + "\n",
        )?;
        say(format!(
            "results written to {} (logs and configs in {})",
            self.args.json.display(),
            self.work_dir.display()
        ));
        Ok(())
    }
}

/// Commits the workers made, from their `exactly_worker_commit_duration_seconds` histogram.
#[derive(Clone, Debug, Default)]
struct Commits {
    count: f64,
    seconds: f64,
    /// Of `seconds`, waiting for the producer's deliveries (`exactly_worker_commit_drain_seconds`).
    drain_seconds: f64,
}

impl Commits {
    fn mean_ms(&self) -> f64 {
        self.seconds * 1000.0 / self.count.max(1.0)
    }

    fn mean_drain_ms(&self) -> f64 {
        self.drain_seconds * 1000.0 / self.count.max(1.0)
    }
}

/// Sums the commit histograms of the workers serving `/metrics` at `addresses`.
fn worker_commits(addresses: &[String]) -> Option<Commits> {
    use std::io::{Read, Write};
    if addresses.is_empty() {
        return None;
    }
    let mut commits = Commits::default();
    for address in addresses {
        let text = (|| -> std::io::Result<String> {
            let socket: std::net::SocketAddr = address
                .parse()
                .map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
            let mut stream = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })()
        .ok()?;
        for line in text.lines() {
            let value = |name: &str| {
                line.strip_prefix(name)
                    .filter(|rest| rest.starts_with('{') || rest.starts_with(' '))
                    .and_then(|rest| rest.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if let Some(v) = value("exactly_worker_commit_duration_seconds_sum") {
                commits.seconds += v;
            }
            if let Some(v) = value("exactly_worker_commit_duration_seconds_count") {
                commits.count += v;
            }
            if let Some(v) = value("exactly_worker_commit_drain_seconds_sum") {
                commits.drain_seconds += v;
            }
        }
    }
    Some(commits)
}

fn commits_text(commits: &Option<Commits>) -> String {
    commits
        .as_ref()
        .map(|c| {
            format!(
                "; the worker's own figures: {:.0} commits, {:.1} ms each on average, {:.1} ms of \
                 it waiting for the producer's deliveries",
                c.count,
                c.mean_ms(),
                c.mean_drain_ms()
            )
        })
        .unwrap_or_default()
}

fn commits_json(commits: &Option<Commits>) -> Value {
    commits
        .as_ref()
        .map(|c| json!({"count": c.count, "meanMs": c.mean_ms()}))
        .unwrap_or(Value::Null)
}

/// The item of median `key` (of an even count, the lower of the two middle ones), consuming
/// `items`; `None` when there is none.
fn median_by<T>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = items.len().saturating_sub(1) / 2;
    items.into_iter().nth(middle)
}

/// Writes every dirty page out (`sync`), then pauses [`SETTLE`]. Without the sync, the GiB a
/// mode wrote stays in the page cache (this machine's background writeback starts at 10 % of
/// RAM, else after 30 s) and the kernel writes it out during a later mode, on its CPU.
fn settle() {
    let failed = match Command::new("sync").status() {
        Ok(status) if status.success() => None,
        Ok(status) => Some(status.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = failed {
        say(format!(
            "sync failed ({why}); the next mode may pay for the last one's writeback"
        ));
    }
    std::thread::sleep(SETTLE);
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The number just before `marker` in `text` (e.g. `81234.5` in `81234.5 records/sec`).
fn number_before(text: &str, marker: &str) -> Option<f64> {
    let head = &text[..text.find(marker)?];
    head.rsplit(|c: char| c.is_whitespace() || c == ',' || c == '(')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut value = value_template(1024);
        stamp(&mut value, 42, 1_700_000_000_000_000);
        assert_eq!(read_stamp(&value), Some((42, 1_700_000_000_000_000)));
        assert_eq!(value.len(), 1024);
    }

    #[test]
    fn tool_summary_numbers_are_read() {
        let line =
            "1000000 records sent, 81234.5 records/sec (79.33 MB/sec), 300.12 ms avg latency";
        assert_eq!(number_before(line, " records/sec"), Some(81234.5));
        assert_eq!(number_before(line, " MB/sec"), Some(79.33));
    }

    #[test]
    fn a_modes_figures_are_its_median_round_and_of_two_the_slower() {
        assert_eq!(median_by(vec![3.0, 1.0, 2.0], |x| *x), Some(2.0));
        assert_eq!(median_by(vec![4.0, 1.0], |x| *x), Some(1.0));
        assert_eq!(median_by(vec![5.0], |x| *x), Some(5.0));
        assert_eq!(median_by(Vec::<f64>::new(), |x| *x), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn the_harmonic_copy_rate_is_below_both() {
        let size = 1024;
        let run = |rps: f64| ToolRun {
            rate: Rate::from_records_per_second(rps, size),
            line: String::new(),
            load_before: String::new(),
            cpu: CpuUse::default(),
        };
        let raw = RawResult {
            produce: run(100.0),
            produce_java_defaults: run(50.0),
            consume: run(300.0),
            consume_fetch_only: Rate::from_records_per_second(300.0, size),
        };
        assert!((raw.copy_harmonic(size).records_per_second - 75.0).abs() < 1e-9);
        assert!((raw.copy_min(size).records_per_second - 100.0).abs() < 1e-9);
    }
}
