//! `make bench-scale`: how the operator copes with many Topics (issue #10's benchmark).
//!
//! One environment (kube-apiserver + etcd, one Kafka broker; no real node) for the whole run.
//! The operator runs as a separate process, the release binary `exactly run` with its default
//! flags (concurrency 4, refresh 30 s) except `--metrics-addr`, so that its RSS and CPU can be
//! read from `/proc/<pid>`. For each size N of `--sizes`, on a fresh operator process and
//! fresh namespaces (each with a KafkaCluster `local` pointing at the broker):
//!
//! 0. **Kafka alone** (unless `--no-ceiling`), before that size's operator starts: N topics
//!    created on the broker directly with the operator's own admin client, in sequential
//!    `CreateTopics` requests of [`CREATE_CHUNK`], timed to the moment a `Metadata` describe
//!    shows all N; they are deleted again and the broker left to settle (its deferred removal
//!    of the deleted partitions' files done) before the operator starts. The broker's own
//!    rate, measured in the same run, that the operator's burst rate is a fraction of.
//!    **API alone** (unless `--no-api-alone`), next, still without the operator: N Topics
//!    created through the API server by `--streams` creators, then one Ready status written per
//!    Topic (a merge patch of `/status`) by as many; both timed. What the operator must at
//!    least have the API server do per Topic, so its rate is the burst rate's ceiling when the
//!    API server (and etcd) are the bottleneck. The Topics and their namespace are deleted again.
//! 1. **Burst**: N Topics (1 partition, replication 1) created by `--streams` concurrent
//!    creators, spread round robin over `--namespaces` namespaces; timed from the first create
//!    to the last Topic seen Ready by a watch (`Ready=True` for the current generation).
//! 2. **Work during the burst**: the operator's own `/metrics` before and after: Topic
//!    reconciles and Kafka admin requests (CreateTopics and all APIs) per Topic.
//! 3. **Single change while steady**: `--probes` Topics created one at a time in another
//!    namespace once the operator is idle, each timed from just before its create to its Ready.
//! 4. **Single change while pending**: a second burst of `--pending-size` Topics in fresh
//!    namespaces; once a tenth of its creates have returned, one more Topic in yet another
//!    namespace is timed to Ready.
//! 5. **RSS** (VmRSS) with 0 Topics (the clusters Ready, 5 s idle), with the N (+ probes) Ready,
//!    and with the second burst Ready too; VmHWM (peak) at the end.
//! 6. **Steady state**: after one refresh interval of quiet, a `--steady-seconds` window:
//!    kube-apiserver's own `apiserver_request_total` (write verbs on `exactly.dev`, and on
//!    Events), the operator's CPU, its Topic reconciles and Kafka admin requests, per refresh.
//!    The benchmark itself does not write during the window (its watch only reads).
//! 7. **ConsumerGroups and Producers** (what the issue's "10 000 Producers and ConsumerGroups"
//!    cost), on the same operator, with the Topics of the phases before still steady: for each
//!    kind in turn, in fresh namespaces (`--namespaces` of them, each with its KafkaCluster
//!    and one Topic, Ready, that every object of the kind names in `spec.topics`), N objects
//!    (minimal specs: a ConsumerGroup's `groupId` is its name; a Producer's unique
//!    `transactionalIdPrefix`, and its Secret `<name>-client`) created by `--streams`
//!    creators, timed from the first create to the last one seen Ready by a watch; the CPU by
//!    process during it; once the operator is idle for the kind (no reconcile of it for 3 s),
//!    its RSS against the RSS just before the kind's burst; then a steady window as in 6: the
//!    API requests per refresh, writes and reads (GET, LIST), of every client on every
//!    resource except the environment's heartbeats ([`HEARTBEATS`]), and the operator's CPU,
//!    reconciles of the kind and Kafka admin requests per refresh (the Topics' refresh is in
//!    the CPU and the Kafka requests too: 6 has them alone). The objects and their namespaces
//!    are deleted (until gone) before the next kind, so each kind's figures are its own.
//!
//! After all sizes, each figure's growth from the smallest to the largest size is printed:
//! (figure at largest / at smallest) / (size ratio), for the total behind the figure, so 1.0 is
//! linear, more is worse than linear, and 1/size-ratio means it does not grow at all.
//!
//! `--phases` picks which of `burst` (1, 2), `probes` (3), `pending` (4), `steady` (6) and
//! `others` (7) run; the figures of a phase not run print as "skipped".
//!
//! During Kafka alone, API alone and the bursts (of Topics, ConsumerGroups, Producers), the CPU
//! seconds (utime + stime) of each process (the environment's, the operator's, the benchmark's
//! own) and the machine's busy time are recorded, and printed under the table: where a burst's
//! time goes.
//!
//! It measures and prints one markdown table (stdout), with progress on stderr; it asserts
//! nothing about speed and exits non-zero only when it cannot run. The figures also go, with the
//! conditions (cores, memory, operator binary and flags, Kafka version), to `--json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use exactly::api::{
    Condition, ConditionStatus, ConsumerGroup, KafkaCluster, Producer, Topic, TopicStatus,
};
use exactly::kafka::{CREATE_CHUNK, KafkaAdmin, NewTopicRequest};
use exactly_testenv::process::Component;
use exactly_testenv::procfs::{clock_ticks, loadavg, process_cpu_seconds, process_memory_kib};
use exactly_testenv::{Environment, Options};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Parser)]
#[command(
    about = "Benchmark the operator with many Topics: burst to Ready, a single change while \
             steady and while pending, RSS, and the steady state's API writes, CPU and Kafka \
             requests; then as many ConsumerGroups, and Producers: burst, RSS, steady state \
             (issue #10)"
)]
struct Args {
    /// Topic counts to measure, comma-separated; each gets a fresh operator and namespaces.
    /// The `others` phase creates as many ConsumerGroups, then as many Producers.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Concurrent creators of a burst (the issue's figures came from `kubectl create` in 6
    /// parallel streams).
    #[arg(long, default_value_t = 6)]
    streams: usize,
    /// Namespaces a burst's Topics are spread over, each with a KafkaCluster of its own.
    #[arg(long, default_value_t = 1)]
    namespaces: usize,
    /// Single Topics timed one after the other while the burst's Topics are steady.
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// Topics of the second burst, during which one more Topic is timed (default: the size).
    #[arg(long)]
    pending_size: Option<usize>,
    /// Longest wait for a burst to be Ready, and for the Topic timed while one is pending.
    #[arg(long, default_value_t = 600)]
    ready_timeout: u64,
    /// Longest wait for one Topic timed while steady.
    #[arg(long, default_value_t = 60)]
    probe_timeout: u64,
    /// Longest wait for the operator to be idle (no Topic reconcile for 3 s) before the
    /// single-change probes; they start anyway afterwards, and the table says so.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Length of the steady-state window, after one refresh interval of quiet.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// The operator's refresh interval, in seconds: its default (30 s) unless an
    /// `--operator-arg` changes it. Only used to wait and to divide by.
    #[arg(long, default_value_t = 30)]
    refresh_seconds: u64,
    /// The `exactly` binary (default: `release/exactly` of this binary's target directory).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// An extra argument of `exactly run` (repeatable), e.g. `--operator-arg=--concurrency=8`.
    /// Default: none, the operator's defaults.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Where the operator's logs go (replaced on each run).
    #[arg(long, default_value = "target/bench-scale")]
    work_dir: PathBuf,
    /// Where the results go as JSON.
    #[arg(long, default_value = "target/bench-scale.json")]
    json: PathBuf,
    /// Skip "Kafka alone": the N topics created on the broker directly, without the operator,
    /// before each size (the broker's own rate, which the operator's burst rate is compared to).
    #[arg(long)]
    no_ceiling: bool,
    /// Skip "API alone": N Topics created and given a Ready status through the API server,
    /// without the operator, before each size (the API server's own rate for the writes the
    /// operator needs at least, which the burst rate is compared to).
    #[arg(long)]
    no_api_alone: bool,
    /// How "API alone" writes each status: `apply` (server-side apply, forced, as the operator
    /// writes its statuses) or `merge` (a JSON merge patch, the cheapest write of a status).
    #[arg(long, value_enum, default_value_t = StatusWrite::Apply)]
    api_alone_status: StatusWrite,
    /// The phases to run, comma-separated; the figures of the others print as "skipped".
    /// `burst`: the N Topics at once (without it the later phases run with no Topics steady);
    /// `probes`: single Topics while steady; `pending`: the second burst and the Topic timed
    /// during it; `steady`: the steady-state window; `others`: N ConsumerGroups, then N
    /// Producers (burst, RSS, steady state).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "burst,probes,pending,steady,others"
    )]
    phases: Vec<Phase>,
}

/// How "API alone" writes a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatusWrite {
    Apply,
    Merge,
}

/// A part of each size's run that `--phases` can leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Burst,
    Probes,
    Pending,
    Steady,
    Others,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Burst => "burst",
            Phase::Probes => "probes",
            Phase::Pending => "pending",
            Phase::Steady => "steady",
            Phase::Others => "others",
        }
    }

    /// The figures this phase measures (what prints as "skipped" without it).
    fn figures(self) -> &'static [&'static str] {
        match self {
            Phase::Burst => &[
                "burstSeconds",
                "burstCreatesSeconds",
                "burstRate",
                "reconcilesPerTopic",
                "createTopicsPerTopic",
                "kafkaRequestsPerTopic",
                // "N Topics Ready": there are none without the burst.
                "rssSteadyMib",
                "rssKibPerTopic",
            ],
            Phase::Probes => &["probeSteadyP50Ms", "probeSteadyP99Ms"],
            Phase::Pending => &["probePendingSeconds", "pendingBurstRate", "rssBothMib"],
            Phase::Steady => &[
                "apiWritesPerMinute",
                "eventWritesPerMinute",
                "cpuSecondsPerRefresh",
                "reconcilesPerRefresh",
                "kafkaRequestsPerRefresh",
            ],
            Phase::Others => OTHER_FIGURES,
        }
    }
}

/// The keys of one kind's figures in the `others` phase.
struct OtherFigures {
    burst_seconds: &'static str,
    burst_rate: &'static str,
    rss_mib: &'static str,
    rss_kib_per_object: &'static str,
    writes_per_refresh: &'static str,
    reads_per_refresh: &'static str,
    cpu_seconds_per_refresh: &'static str,
    reconciles_per_refresh: &'static str,
    kafka_requests_per_refresh: &'static str,
}

impl OtherFigures {
    #[cfg(test)]
    fn all(&self) -> [&'static str; 9] {
        [
            self.burst_seconds,
            self.burst_rate,
            self.rss_mib,
            self.rss_kib_per_object,
            self.writes_per_refresh,
            self.reads_per_refresh,
            self.cpu_seconds_per_refresh,
            self.reconciles_per_refresh,
            self.kafka_requests_per_refresh,
        ]
    }
}

/// A kind the `others` phase measures after the Topics.
struct OtherKind {
    /// `ConsumerGroups`, as printed.
    plural: &'static str,
    /// Its objects' names start with it (`cg0-0-000001`), and its Topics'.
    short: &'static str,
    /// Its namespaces are `bench-<size index>-<key>-<j>`; its details in the JSON start with it.
    key: &'static str,
    /// Its key and label in the CPU block.
    cpu_key: &'static str,
    cpu_label: &'static str,
    /// The spec of the object `name` naming the Topic `topic`.
    spec: fn(name: &str, topic: &str) -> Value,
    figures: OtherFigures,
}

/// A minimal ConsumerGroup: its `groupId` defaults to its name, unique on the broker.
fn group_spec(_name: &str, topic: &str) -> Value {
    json!({"clusterRef": {"name": CLUSTER}, "topics": [{"name": topic}]})
}

/// A minimal Producer: its `transactionalIdPrefix`, unique on the broker, is its name.
fn producer_spec(name: &str, topic: &str) -> Value {
    json!({
        "clusterRef": {"name": CLUSTER},
        "transactionalIdPrefix": name,
        "topics": [{"name": topic}],
    })
}

const GROUPS: OtherKind = OtherKind {
    plural: "ConsumerGroups",
    short: "cg",
    key: "groups",
    cpu_key: "groupsBurst",
    cpu_label: "ConsumerGroups burst",
    spec: group_spec,
    figures: OtherFigures {
        burst_seconds: "groupsBurstSeconds",
        burst_rate: "groupsBurstRate",
        rss_mib: "groupsRssMib",
        rss_kib_per_object: "groupsRssKibPerGroup",
        writes_per_refresh: "groupsApiWritesPerRefresh",
        reads_per_refresh: "groupsApiReadsPerRefresh",
        cpu_seconds_per_refresh: "groupsCpuSecondsPerRefresh",
        reconciles_per_refresh: "groupsReconcilesPerRefresh",
        kafka_requests_per_refresh: "groupsKafkaRequestsPerRefresh",
    },
};

const PRODUCERS: OtherKind = OtherKind {
    plural: "Producers",
    short: "pr",
    key: "producers",
    cpu_key: "producersBurst",
    cpu_label: "Producers burst",
    spec: producer_spec,
    figures: OtherFigures {
        burst_seconds: "producersBurstSeconds",
        burst_rate: "producersBurstRate",
        rss_mib: "producersRssMib",
        rss_kib_per_object: "producersRssKibPerProducer",
        writes_per_refresh: "producersApiWritesPerRefresh",
        reads_per_refresh: "producersApiReadsPerRefresh",
        cpu_seconds_per_refresh: "producersCpuSecondsPerRefresh",
        reconciles_per_refresh: "producersReconcilesPerRefresh",
        kafka_requests_per_refresh: "producersKafkaRequestsPerRefresh",
    },
};

/// The figures of the `others` phase: [`GROUPS`]'s, then [`PRODUCERS`]'s.
const OTHER_FIGURES: &[&str] = &[
    "groupsBurstSeconds",
    "groupsBurstRate",
    "groupsRssMib",
    "groupsRssKibPerGroup",
    "groupsApiWritesPerRefresh",
    "groupsApiReadsPerRefresh",
    "groupsCpuSecondsPerRefresh",
    "groupsReconcilesPerRefresh",
    "groupsKafkaRequestsPerRefresh",
    "producersBurstSeconds",
    "producersBurstRate",
    "producersRssMib",
    "producersRssKibPerProducer",
    "producersApiWritesPerRefresh",
    "producersApiReadsPerRefresh",
    "producersCpuSecondsPerRefresh",
    "producersReconcilesPerRefresh",
    "producersKafkaRequestsPerRefresh",
];

/// The figures of "Kafka alone" (`--no-ceiling` skips them).
const KAFKA_ALONE_FIGURES: &[&str] = &["burstKafkaAloneSeconds", "burstKafkaAloneRate"];
/// The operator's burst rate as a fraction of Kafka alone's.
const RATIO_FIGURE: &str = "burstRateOverKafkaAlone";
/// The figures of "API alone" (`--no-api-alone` skips them).
const API_ALONE_FIGURES: &[&str] = &[
    "burstApiAloneCreatesSeconds",
    "burstApiAloneCreatesRate",
    "burstApiAloneSeconds",
    "burstApiAloneRate",
];
/// The operator's burst rate as a fraction of API alone's (creates and status writes).
const API_RATIO_FIGURE: &str = "burstRateOverApiAlone";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Every object the benchmark creates carries this label, so one watch sees only them.
const BENCH_LABEL: &str = "exactly.dev/bench";
const BENCH_LABEL_VALUE: &str = "scale";
/// The KafkaCluster of each namespace.
const CLUSTER: &str = "local";
/// How long the operator idles before its 0-Topic RSS is read.
const IDLE_BEFORE_BASELINE: Duration = Duration::from_secs(5);
/// How often long waits print a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(args: Args) -> Result<(), Error> {
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err("--sizes must list positive Topic counts".into());
    }
    if args.streams == 0 || args.namespaces == 0 || args.refresh_seconds == 0 {
        return Err("--streams, --namespaces and --refresh-seconds must be positive".into());
    }
    if args.pending_size == Some(0) {
        return Err("--pending-size must be positive".into());
    }
    let operator = match &args.operator {
        Some(path) => path.clone(),
        None => default_operator()?,
    };
    if !operator.exists() {
        return Err(format!(
            "{} not found: `cargo build --release -p exactly --bin exactly` (make bench-scale \
             does)",
            operator.display()
        )
        .into());
    }
    let operator = std::fs::canonicalize(&operator)?;
    let _ = std::fs::remove_dir_all(&args.work_dir);
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = std::fs::canonicalize(&args.work_dir)?;
    let load_before = loadavg();

    say("starting the environment (Kubernetes control plane and one Kafka broker)");
    let env = Environment::start(Options {
        kubernetes: true,
        install_crds: true,
        real_node: false,
        // 20 000 partitions (a size's two bursts) do not fit the tests' 512 MiB broker heap:
        // it collects garbage back to back and the benchmark measures that instead.
        kafka_heap: "2g".to_string(),
        ..Options::default()
    })?;
    // One thread for the whole driver: the creators, the watch and the waits. It leaves the
    // second core to the operator, the API server and the broker, and the operator process is
    // started from this thread, whose end its parent-death signal is tied to.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|runtime| runtime.block_on(bench(&env, &args, &operator, &work_dir)));
    if result.is_err() {
        env.record_failure("bench-scale");
    }
    env.shutdown();
    let sizes = result?;

    let table = render_table(ROWS, &sizes);
    println!("{table}");
    let conditions = conditions(&env, &args, &operator, &load_before);
    let growth: serde_json::Map<String, Value> = ROWS
        .iter()
        .map(|row| {
            (
                row.key.to_string(),
                json!(growth_of(row, &sizes).map(|(g, _)| g)),
            )
        })
        .collect();
    let report = json!({
        "conditions": conditions,
        "sizes": sizes.iter().map(SizeReport::to_json).collect::<Vec<_>>(),
        "growth": growth,
        "table": table,
    });
    if let Some(dir) = args.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    say(format!(
        "figures and conditions written to {}",
        args.json.display()
    ));
    Ok(())
}

/// `release/exactly` of the target directory this binary is in, else its neighbour.
fn default_operator() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("no directory of the current executable")?;
    let release = dir.parent().map(|target| target.join("release/exactly"));
    Ok(match release {
        Some(path) if path.exists() => path,
        _ => dir.join("exactly"),
    })
}

async fn bench(
    env: &Environment,
    args: &Args,
    operator: &Path,
    work_dir: &Path,
) -> Result<Vec<SizeReport>, Error> {
    let client = env.client().await?;
    let mut reports = Vec::new();
    for (index, &size) in args.sizes.iter().enumerate() {
        let last = index + 1 == args.sizes.len();
        let mut run = SizeRun::new(env, &client, args, index, size);
        let report = run.measure(operator, work_dir).await?;
        say(format!(
            "size {}: done\n{}",
            grouped(size as f64, 0),
            render_table(ROWS, std::slice::from_ref(&report))
        ));
        reports.push(report);
        // The environment goes at the end anyway; between sizes the next one starts clean.
        if !last {
            run.clean_up().await;
        }
    }
    Ok(reports)
}

// ---------------------------------------------------------------------------------------------
// The table

/// How a figure's growth between two sizes is computed, so that 1.0 always means linear.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Growth {
    /// A total (seconds, MiB, requests): (large / small) / size ratio.
    Total,
    /// A figure per Topic (or per object of another kind): the total behind it grows by
    /// large / small over the size ratio.
    PerTopic,
    /// A rate (Topics per second): the time behind it grows by small / large over the ratio.
    Rate,
    /// Not meaningful (a figure that does not depend on the size).
    None,
}

struct Row {
    key: &'static str,
    label: &'static str,
    goal: &'static str,
    growth: Growth,
}

const ROWS: &[Row] = &[
    Row {
        key: "burstSeconds",
        label: "Burst: N Topics created at once → all Ready (s)",
        goal: "≤ 6 at 1 000, ≤ 60 at 10 000",
        growth: Growth::Total,
    },
    Row {
        key: "burstCreatesSeconds",
        label: "Burst: last create returned (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "burstRate",
        label: "Burst rate (Topics Ready/s)",
        goal: "≥ 170",
        growth: Growth::Rate,
    },
    Row {
        key: "burstKafkaAloneSeconds",
        label: "Kafka alone: N topics created on the broker, no operator → all in Metadata (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "burstKafkaAloneRate",
        label: "Kafka alone rate (topics/s)",
        goal: "",
        growth: Growth::Rate,
    },
    Row {
        key: RATIO_FIGURE,
        label: "Operator burst rate / Kafka-alone rate",
        goal: "",
        growth: Growth::None,
    },
    Row {
        key: "burstApiAloneCreatesSeconds",
        label: "API alone: N Topics created through the API server, no operator → last create \
                returned (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "burstApiAloneCreatesRate",
        label: "API alone: creates rate (Topics/s)",
        goal: "",
        growth: Growth::Rate,
    },
    Row {
        key: "burstApiAloneSeconds",
        label: "API alone: N creates, then N Ready status writes (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "burstApiAloneRate",
        label: "API alone: create + status rate (Topics/s)",
        goal: "ceiling of the burst rate",
        growth: Growth::Rate,
    },
    Row {
        key: API_RATIO_FIGURE,
        label: "Operator burst rate / API-alone create + status rate",
        goal: "",
        growth: Growth::None,
    },
    Row {
        key: "reconcilesPerTopic",
        label: "Topic reconciles per Topic (burst, to all Ready)",
        goal: "≈ 1",
        growth: Growth::PerTopic,
    },
    Row {
        key: "createTopicsPerTopic",
        label: "CreateTopics requests per Topic (burst)",
        goal: "≪ 1 (batched)",
        growth: Growth::PerTopic,
    },
    Row {
        key: "kafkaRequestsPerTopic",
        label: "Kafka admin requests per Topic (burst, all APIs)",
        goal: "",
        growth: Growth::PerTopic,
    },
    Row {
        key: "probeSteadyP50Ms",
        label: "One Topic while N steady: p50 (ms)",
        goal: "≤ 200",
        growth: Growth::Total,
    },
    Row {
        key: "probeSteadyP99Ms",
        label: "One Topic while N steady: p99 (ms; nearest rank, the max below 100 probes)",
        goal: "≤ 1 000",
        growth: Growth::Total,
    },
    Row {
        key: "probePendingSeconds",
        label: "One Topic while N more are pending (s)",
        goal: "≤ 5",
        growth: Growth::Total,
    },
    Row {
        key: "pendingBurstRate",
        label: "Second burst rate, with the N steady (Topics Ready/s)",
        goal: "",
        growth: Growth::Rate,
    },
    Row {
        key: "rssIdleMib",
        label: "Operator RSS, 0 Topics (MiB)",
        goal: "",
        growth: Growth::None,
    },
    Row {
        key: "rssSteadyMib",
        label: "Operator RSS, N Topics Ready (MiB)",
        goal: "≤ 64 at 10 000",
        growth: Growth::Total,
    },
    Row {
        key: "rssKibPerTopic",
        label: "RSS per Topic ((N Ready − 0) / N, KiB)",
        goal: "",
        growth: Growth::PerTopic,
    },
    Row {
        key: "rssBothMib",
        label: "Operator RSS, 2 bursts Ready (MiB)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "rssPeakMib",
        label: "Operator peak RSS (VmHWM or the largest RSS sampled, MiB)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "apiWritesPerMinute",
        label: "Steady: exactly.dev API writes per minute",
        goal: "0",
        growth: Growth::Total,
    },
    Row {
        key: "eventWritesPerMinute",
        label: "Steady: Event writes per minute (all clients)",
        goal: "0",
        growth: Growth::Total,
    },
    Row {
        key: "cpuSecondsPerRefresh",
        label: "Steady: operator CPU per refresh (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "reconcilesPerRefresh",
        label: "Steady: Topic reconciles per refresh",
        goal: "≪ N",
        growth: Growth::Total,
    },
    Row {
        key: "kafkaRequestsPerRefresh",
        label: "Steady: Kafka admin requests per refresh",
        goal: "O(clusters), not growing with N",
        growth: Growth::Total,
    },
    Row {
        key: "groupsBurstSeconds",
        label: "ConsumerGroups: N created at once → all Ready (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "groupsBurstRate",
        label: "ConsumerGroups burst rate (ConsumerGroups Ready/s)",
        goal: "",
        growth: Growth::Rate,
    },
    Row {
        key: "groupsRssMib",
        label: "Operator RSS, N ConsumerGroups Ready (MiB)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "groupsRssKibPerGroup",
        label: "RSS per ConsumerGroup ((N ConsumerGroups Ready − before their burst) / N, KiB)",
        goal: "",
        growth: Growth::PerTopic,
    },
    Row {
        key: "groupsApiWritesPerRefresh",
        label: "Steady, N ConsumerGroups: API writes per refresh (every client and resource but \
                heartbeats)",
        goal: "0",
        growth: Growth::Total,
    },
    Row {
        key: "groupsApiReadsPerRefresh",
        label: "Steady, N ConsumerGroups: API reads (GET, LIST) per refresh (likewise)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "groupsCpuSecondsPerRefresh",
        label: "Steady, N ConsumerGroups: operator CPU per refresh (s, the Topics' included)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "groupsReconcilesPerRefresh",
        label: "Steady, N ConsumerGroups: ConsumerGroup reconciles per refresh",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "groupsKafkaRequestsPerRefresh",
        label: "Steady, N ConsumerGroups: Kafka admin requests per refresh (the Topics' included)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersBurstSeconds",
        label: "Producers: N created at once → all Ready (s)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersBurstRate",
        label: "Producers burst rate (Producers Ready/s)",
        goal: "",
        growth: Growth::Rate,
    },
    Row {
        key: "producersRssMib",
        label: "Operator RSS, N Producers Ready (MiB)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersRssKibPerProducer",
        label: "RSS per Producer ((N Producers Ready − before their burst) / N, KiB)",
        goal: "",
        growth: Growth::PerTopic,
    },
    Row {
        key: "producersApiWritesPerRefresh",
        label: "Steady, N Producers: API writes per refresh (every client and resource but \
                heartbeats)",
        goal: "0",
        growth: Growth::Total,
    },
    Row {
        key: "producersApiReadsPerRefresh",
        label: "Steady, N Producers: API reads (GET, LIST) per refresh (likewise)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersCpuSecondsPerRefresh",
        label: "Steady, N Producers: operator CPU per refresh (s, the Topics' included)",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersReconcilesPerRefresh",
        label: "Steady, N Producers: Producer reconciles per refresh",
        goal: "",
        growth: Growth::Total,
    },
    Row {
        key: "producersKafkaRequestsPerRefresh",
        label: "Steady, N Producers: Kafka admin requests per refresh (the Topics' included)",
        goal: "",
        growth: Growth::Total,
    },
];

/// One figure of one size: the number (when there is one) and what the table shows.
#[derive(Clone, Debug, PartialEq)]
struct Cell {
    value: Option<f64>,
    text: String,
}

impl Cell {
    fn number(value: f64, decimals: usize) -> Cell {
        Cell {
            value: Some(value),
            text: grouped(value, decimals),
        }
    }

    fn text(text: impl Into<String>) -> Cell {
        Cell {
            value: None,
            text: text.into(),
        }
    }
}

struct SizeReport {
    size: usize,
    pending_size: usize,
    clusters: usize,
    cells: BTreeMap<&'static str, Cell>,
    /// What a reader of the table must know about how a figure was taken (printed under it).
    notes: Vec<String>,
    details: serde_json::Map<String, Value>,
    /// CPU by process during Kafka alone, API alone and the burst (those that ran).
    cpu: Vec<CpuUse>,
}

impl SizeReport {
    fn to_json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .cells
            .iter()
            .map(|(key, cell)| {
                (
                    key.to_string(),
                    json!({"value": cell.value, "text": cell.text}),
                )
            })
            .collect();
        json!({
            "size": self.size,
            "pendingSize": self.pending_size,
            "clusters": self.clusters,
            "figures": figures,
            "notes": self.notes,
            "details": self.details,
            "cpu": self
                .cpu
                .iter()
                .map(|c| (c.key.to_string(), c.to_json()))
                .collect::<serde_json::Map<String, Value>>(),
        })
    }
}

/// A number with its integer part grouped by thousands with a space (`10 000`, `1 234.5`).
fn grouped(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text.as_str(), None),
    };
    let mut out = String::new();
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    // "-0" and "-0.0" are zero.
    if value < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '-');
    }
    out
}

/// The growth figure of `kind` between a smaller and a larger size (see [`Growth`]).
fn growth(kind: Growth, small: f64, large: f64, size_ratio: f64) -> Option<f64> {
    if !(small > 0.0 && large > 0.0 && size_ratio > 0.0) {
        return None;
    }
    match kind {
        Growth::Total => Some(large / small / size_ratio),
        Growth::PerTopic => Some(large / small),
        Growth::Rate => Some(small / large),
        Growth::None => None,
    }
}

/// A row's growth from the smallest to the largest size, with that size ratio.
fn growth_of(row: &Row, sizes: &[SizeReport]) -> Option<(f64, f64)> {
    let small = sizes.iter().min_by_key(|s| s.size)?;
    let large = sizes.iter().max_by_key(|s| s.size)?;
    if large.size <= small.size {
        return None;
    }
    let ratio = large.size as f64 / small.size as f64;
    let value = |s: &SizeReport| s.cells.get(row.key).and_then(|c| c.value);
    Some((
        growth(row.growth, value(small)?, value(large)?, ratio)?,
        ratio,
    ))
}

/// The markdown table: one row per figure, a column per size, the goal, and the growth.
fn render_table(rows: &[Row], sizes: &[SizeReport]) -> String {
    let mut header = vec!["Figure".to_string()];
    header.extend(
        sizes
            .iter()
            .map(|s| format!("N = {}", grouped(s.size as f64, 0))),
    );
    header.push("Goal".into());
    let with_growth = sizes.len() > 1;
    if with_growth {
        header.push("Growth".into());
    }
    let mut lines = vec![
        format!("| {} |", header.join(" | ")),
        format!("|{}", "---|".repeat(header.len())),
    ];
    for row in rows {
        let mut cells = vec![row.label.to_string()];
        cells.extend(sizes.iter().map(|s| {
            s.cells
                .get(row.key)
                .map(|c| c.text.clone())
                .unwrap_or_else(|| "n/a".into())
        }));
        cells.push(row.goal.to_string());
        if with_growth {
            cells.push(
                growth_of(row, sizes)
                    .map(|(g, _)| format!("{g:.2}"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        lines.push(format!("| {} |", cells.join(" | ")));
    }
    if with_growth {
        let min = sizes.iter().map(|s| s.size).min().unwrap_or(1).max(1);
        let max = sizes.iter().map(|s| s.size).max().unwrap_or(1);
        let ratio = max as f64 / min as f64;
        lines.push(String::new());
        lines.push(format!(
            "Growth: (figure at the largest size / at the smallest) / size ratio ({}), of the \
             total behind the figure (the time behind a rate, the total behind a per-Topic \
             figure): 1.0 = linear, > 1 worse than linear, {:.2} = does not grow.",
            grouped(ratio, 1),
            1.0 / ratio
        ));
    }
    let cpu: Vec<String> = sizes
        .iter()
        .flat_map(|s| {
            s.cpu
                .iter()
                .map(|c| format!("- N = {}, {}", grouped(s.size as f64, 0), c.text()))
        })
        .collect();
    if !cpu.is_empty() {
        lines.push(String::new());
        lines.push(
            "CPU seconds by process (utime + stime) during each burst, the most first; the \
             machine's busy time from /proc/stat (all cores):"
                .into(),
        );
        lines.extend(cpu);
    }
    let notes: Vec<String> = sizes
        .iter()
        .flat_map(|s| {
            s.notes
                .iter()
                .map(|n| format!("- N = {}: {n}", grouped(s.size as f64, 0)))
        })
        .collect();
    if !notes.is_empty() {
        lines.push(String::new());
        lines.push("Notes:".into());
        lines.extend(notes);
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Small measures

/// Nearest-rank percentile of samples, where `None` is a sample that never finished (it sorts
/// above every finished one, and a percentile landing on it is `None`).
fn percentile(samples: &[Option<f64>], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<Option<f64>> = samples.to_vec();
    sorted.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// CPU by process during a burst

/// The machine's CPU seconds so far, over all cores, from the first line of /proc/stat.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MachineCpu {
    /// user + nice + system + irq + softirq + steal.
    busy: f64,
    /// busy + idle + iowait.
    total: f64,
    /// Time the hypervisor gave this VM's CPUs to someone else: counted busy, but no process
    /// of the machine used it.
    steal: f64,
}

fn machine_cpu_seconds() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_cpu_from_stat(&stat, clock_ticks())
}

fn machine_cpu_from_stat(stat: &str, ticks_per_second: f64) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some(MachineCpu {
        busy: busy / ticks_per_second,
        total: (busy + idle + iowait) / ticks_per_second,
        steal: steal / ticks_per_second,
    })
}

/// The CPU seconds used so far by some processes and by the machine, at one moment.
struct CpuMark {
    at: Instant,
    /// (name, pid, CPU seconds; `None` when /proc could not be read).
    processes: Vec<(String, u32, Option<f64>)>,
    machine: Option<MachineCpu>,
}

impl CpuMark {
    fn take(processes: &[(String, u32)]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            processes: processes
                .iter()
                .map(|(name, pid)| (name.clone(), *pid, process_cpu_seconds(*pid)))
                .collect(),
            machine: machine_cpu_seconds(),
        }
    }
}

/// The CPU seconds each process used during one phase.
#[derive(Clone, Debug, PartialEq)]
struct CpuUse {
    /// Its key in the JSON (`kafkaAlone`, `apiAlone`, `burst`).
    key: &'static str,
    /// As printed (`Kafka alone`, ...).
    label: &'static str,
    /// What the phase made (`300 Topics`).
    what: String,
    wall_seconds: f64,
    /// (name, CPU seconds), the most first; a process not readable at both ends is left out.
    processes: Vec<(String, f64)>,
    /// The machine's CPU seconds over the phase.
    machine: Option<MachineCpu>,
}

/// Processes that used less than this in a phase are left out of the printed line.
const CPU_PRINTED_FROM: f64 = 0.05;

impl CpuUse {
    fn between(
        key: &'static str,
        label: &'static str,
        what: String,
        before: &CpuMark,
        after: &CpuMark,
    ) -> CpuUse {
        let mut processes: Vec<(String, f64)> = after
            .processes
            .iter()
            .filter_map(|(name, pid, now)| {
                let earlier = before
                    .processes
                    .iter()
                    .find(|(n, p, _)| n == name && p == pid)
                    .and_then(|(_, _, s)| *s)?;
                Some((name.clone(), (*now)? - earlier))
            })
            .collect();
        processes.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let machine = match (before.machine, after.machine) {
            (Some(a), Some(b)) => Some(MachineCpu {
                busy: b.busy - a.busy,
                total: b.total - a.total,
                steal: b.steal - a.steal,
            }),
            _ => None,
        };
        CpuUse {
            key,
            label,
            what,
            wall_seconds: (after.at - before.at).as_secs_f64(),
            processes,
            machine,
        }
    }

    /// `burst (300 Topics, 5.2 s wall): kube-apiserver 4.1 s, ...; machine 9.8 s busy of 10.4 s`
    fn text(&self) -> String {
        let listed: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, s)| *s >= CPU_PRINTED_FROM)
            .map(|(name, s)| format!("{name} {} s", grouped(*s, 1)))
            .collect();
        let mut text = format!(
            "{} ({}, {} s wall): {}",
            self.label,
            self.what,
            grouped(self.wall_seconds, 1),
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        );
        if listed.len() < self.processes.len() {
            text.push_str(&format!(
                ", the other {} under {CPU_PRINTED_FROM} s",
                self.processes.len() - listed.len()
            ));
        }
        if let Some(m) = self.machine {
            let ours: f64 = self.processes.iter().map(|(_, s)| s).sum();
            text.push_str(&format!(
                "; machine {} s busy of {} s, {} s of it outside these processes ({} s stolen \
                 by the hypervisor)",
                grouped(m.busy, 1),
                grouped(m.total, 1),
                grouped((m.busy - ours).max(0.0), 1),
                grouped(m.steal, 1)
            ));
        }
        text
    }

    fn to_json(&self) -> Value {
        // /proc counts in clock ticks (10 ms): the differences' float noise is cut off.
        let ms = |seconds: f64| (seconds * 1000.0).round() / 1000.0;
        json!({
            "phase": self.label,
            "what": self.what,
            "wallSeconds": ms(self.wall_seconds),
            "cpuSeconds": self
                .processes
                .iter()
                .map(|(name, s)| (name.clone(), json!(ms(*s))))
                .collect::<serde_json::Map<String, Value>>(),
            "machine": self.machine.map(|m| {
                json!({
                    "busySeconds": ms(m.busy),
                    "totalSeconds": ms(m.total),
                    "stealSeconds": ms(m.steal),
                })
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text

/// One sample line of the Prometheus / OpenMetrics text format.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Parses one sample line (`name{a="x",b="y"} 12 [timestamp]`); `None` for comments, blank
/// lines and anything malformed.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample).collect()
}

/// The operator's counters the benchmark reads.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counters {
    /// `exactly_reconciles_total` by `kind` (`Topic`, `ConsumerGroup`, ...), over every result.
    reconciles: BTreeMap<String, f64>,
    /// `exactly_kafka_admin_requests_total` by `api`; `None` when the operator does not export it.
    kafka: Option<BTreeMap<String, f64>>,
}

const RECONCILES: &str = "exactly_reconciles_total";
const KAFKA_REQUESTS: &str = "exactly_kafka_admin_requests_total";

impl Counters {
    fn from_exposition(text: &str) -> Counters {
        // A registered counter family with no sample yet shows only its `# TYPE` line.
        let kafka_declared = text.lines().any(|l| {
            l.starts_with("# TYPE exactly_kafka_admin_requests ")
                || l.starts_with("# TYPE exactly_kafka_admin_requests_total ")
        });
        let mut counters = Counters {
            reconciles: BTreeMap::new(),
            kafka: kafka_declared.then(BTreeMap::new),
        };
        for sample in parse_exposition(text) {
            if sample.name == RECONCILES {
                *counters
                    .reconciles
                    .entry(sample.label("kind").to_string())
                    .or_default() += sample.value;
            } else if sample.name == KAFKA_REQUESTS {
                *counters
                    .kafka
                    .get_or_insert_with(BTreeMap::new)
                    .entry(sample.label("api").to_string())
                    .or_default() += sample.value;
            }
        }
        counters
    }

    /// What was counted between `earlier` and `self`.
    fn since(&self, earlier: &Counters) -> Counters {
        let kafka = self
            .kafka
            .as_ref()
            .map(|now| difference(now, &earlier.kafka.clone().unwrap_or_default()));
        Counters {
            reconciles: difference(&self.reconciles, &earlier.reconciles),
            kafka,
        }
    }

    /// Reconciles of `kind` (`Topic`, `ConsumerGroup`, `Producer`), over every result.
    fn reconciles_of(&self, kind: &str) -> f64 {
        self.reconciles.get(kind).copied().unwrap_or(0.0)
    }

    fn topic_reconciles(&self) -> f64 {
        self.reconciles_of("Topic")
    }

    fn kafka_api(&self, api: &str) -> Option<f64> {
        self.kafka
            .as_ref()
            .map(|k| k.get(api).copied().unwrap_or(0.0))
    }

    fn kafka_total(&self) -> Option<f64> {
        self.kafka.as_ref().map(|k| k.values().sum())
    }

    fn to_json(&self) -> Value {
        json!({
            "topicReconciles": self.topic_reconciles(),
            "reconciles": self.reconciles,
            "kafkaRequests": self.kafka,
        })
    }
}

/// `now - before` key by key (a key missing from `before` counts from 0), without the zeros.
fn difference(
    now: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    now.iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n != 0.0)
        .collect()
}

/// Requests kube-apiserver counted (`apiserver_request_total`, every client).
#[derive(Clone, Debug, Default, PartialEq)]
struct ApiRequests {
    /// Write verbs on group `exactly.dev`.
    exactly: f64,
    /// Write verbs on `events` (core and `events.k8s.io`).
    events: f64,
    /// Both, by `VERB group/resource[/subresource]`.
    by_request: BTreeMap<String, f64>,
    /// Write verbs on every resource of every group, but the environment's [`HEARTBEATS`].
    writes: f64,
    /// Reads ([`READ_VERBS`]) of every resource of every group, but the [`HEARTBEATS`].
    reads: f64,
    /// Every write and read of a resource, the heartbeats' too, by
    /// `VERB group/resource[/subresource]`.
    all: BTreeMap<String, f64>,
}

const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];
/// A GET of one object, a LIST of many; WATCH, long-running, is not counted (the benchmark's
/// own watches would be).
const READ_VERBS: &[&str] = &["GET", "LIST"];
/// The `group/resource`s the environment keeps writing and reading whatever the operator does:
/// leases (kube-apiserver's identity lease, kwok's node leases) and nodes (kwok's fake nodes'
/// status). Left out of [`ApiRequests::writes`] and [`ApiRequests::reads`].
const HEARTBEATS: &[&str] = &["coordination.k8s.io/leases", "core/nodes"];

impl ApiRequests {
    fn from_exposition(text: &str) -> ApiRequests {
        let mut requests = ApiRequests::default();
        for sample in parse_exposition(text) {
            let verb = sample.label("verb");
            let write = WRITE_VERBS.contains(&verb);
            let resource = sample.label("resource");
            // No resource: a non-resource URL (`/metrics`, `/healthz`, discovery).
            if sample.name != "apiserver_request_total"
                || resource.is_empty()
                || !(write || READ_VERBS.contains(&verb))
            {
                continue;
            }
            let group = match sample.label("group") {
                "" => "core",
                group => group,
            };
            let subresource = match sample.label("subresource") {
                "" => String::new(),
                s => format!("/{s}"),
            };
            let request = format!("{verb} {group}/{resource}{subresource}");
            *requests.all.entry(request.clone()).or_default() += sample.value;
            if !HEARTBEATS.contains(&format!("{group}/{resource}").as_str()) {
                if write {
                    requests.writes += sample.value;
                } else {
                    requests.reads += sample.value;
                }
            }
            if !write {
                continue;
            }
            let ours = group == "exactly.dev";
            let events = resource == "events";
            if !ours && !events {
                continue;
            }
            if ours {
                requests.exactly += sample.value;
            } else {
                requests.events += sample.value;
            }
            *requests.by_request.entry(request).or_default() += sample.value;
        }
        requests
    }

    fn since(&self, earlier: &ApiRequests) -> ApiRequests {
        ApiRequests {
            exactly: self.exactly - earlier.exactly,
            events: self.events - earlier.events,
            by_request: difference(&self.by_request, &earlier.by_request),
            writes: self.writes - earlier.writes,
            reads: self.reads - earlier.reads,
            all: difference(&self.all, &earlier.all),
        }
    }
}

async fn apiserver_requests(client: &Client) -> Result<ApiRequests, Error> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(ApiRequests::from_exposition(&text))
}

/// `GET path` over plain HTTP/1.0 (the operator's endpoint answers and closes); the body.
async fn http_get(address: &str, path: &str) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET http://{address}{path}: no answer in 10 s"))??;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{address}{path}: no HTTP response"))?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET http://{address}{path}: {status}").into());
    }
    Ok(body.to_string())
}

// ---------------------------------------------------------------------------------------------
// The operator process

struct Operator {
    process: Component,
    /// `127.0.0.1:<port>` of its /metrics.
    metrics: String,
    args: Vec<String>,
    /// Largest VmRSS sampled (KiB): the kernel's VmHWM is approximate (per-thread RSS counters
    /// are folded in lazily) and was seen below an RSS read earlier.
    peak_rss_kib: u64,
}

impl Operator {
    /// Starts `exactly run` with its defaults, `--metrics-addr` on a free port and `extra`.
    fn start(
        binary: &Path,
        extra: &[String],
        kubeconfig: &Path,
        log: &Path,
    ) -> Result<Operator, Error> {
        // A port free now; the operator binds it a moment later.
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let metrics = format!("127.0.0.1:{port}");
        let mut args = vec!["run".to_string(), "--metrics-addr".into(), metrics.clone()];
        args.extend(extra.iter().cloned());
        let mut command = Command::new(binary);
        command
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn");
        // Its flags also read EXACTLY_* variables: the defaults measured must be the defaults.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EXACTLY_") || key == "POD_NAMESPACE" {
                command.env_remove(key);
            }
        }
        let process = Component::spawn("exactly", command, log)?;
        Ok(Operator {
            process,
            metrics,
            args,
            peak_rss_kib: 0,
        })
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// An error with the end of its log once it has exited. Called every few hundred ms
    /// during waits, so it also samples RSS for the peak.
    fn check_alive(&mut self) -> Result<(), Error> {
        self.memory_kib();
        if let Some((_, status)) = self.process.exited() {
            return Err(format!(
                "the operator (pid {}) exited ({status}); log {}, last lines:\n{}",
                self.pid(),
                self.process.log.display(),
                self.process.log_tail(25)
            )
            .into());
        }
        Ok(())
    }

    /// (VmRSS, VmHWM) in KiB, noting the RSS for [`Operator::peak_kib`].
    fn memory_kib(&mut self) -> Option<(u64, u64)> {
        let memory = process_memory_kib(self.pid());
        if let Some((rss, _)) = memory {
            self.peak_rss_kib = self.peak_rss_kib.max(rss);
        }
        memory
    }

    /// The peak RSS: VmHWM, or the largest RSS sampled when that is larger.
    fn peak_kib(&mut self) -> Option<u64> {
        let (_, hwm) = self.memory_kib()?;
        Some(hwm.max(self.peak_rss_kib))
    }

    fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid())
    }

    async fn counters(&self) -> Option<Counters> {
        match http_get(&self.metrics, "/metrics").await {
            Ok(text) => Some(Counters::from_exposition(&text)),
            Err(e) => {
                say(format!("reading the operator's /metrics: {e}"));
                None
            }
        }
    }

    async fn wait_serving(&mut self, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            match http_get(&self.metrics, "/healthz").await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > timeout => {
                    return Err(format!(
                        "the operator did not serve {} within {timeout:?}: {e}",
                        self.metrics
                    )
                    .into());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn stop(mut self) {
        self.process.terminate();
        self.process
            .wait_or_kill(Instant::now() + Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------------------------------------
// Watching Topics (and ConsumerGroups, Producers) become Ready

/// A kind the benchmark creates, labelled, and watches until Ready.
trait Benched:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// The conditions of its status, and the generation the status says it observed.
    fn ready_status(&self) -> Option<(&[Condition], Option<i64>)>;
}

macro_rules! benched {
    ($($kind:ty),*) => {$(
        impl Benched for $kind {
            fn ready_status(&self) -> Option<(&[Condition], Option<i64>)> {
                self.status
                    .as_ref()
                    .map(|s| (s.conditions.as_slice(), s.observed_generation))
            }
        }
    )*};
}
benched!(Topic, ConsumerGroup, Producer);

/// Ready for the spec as it is now: `Ready=True` computed for the object's generation.
fn is_ready<K: Benched>(object: &K) -> bool {
    let Some(generation) = object.meta().generation else {
        return false;
    };
    let Some((conditions, observed)) = object.ready_status() else {
        return false;
    };
    conditions.iter().any(|c| {
        c.type_ == "Ready"
            && c.status == ConditionStatus::True
            && c.observed_generation.or(observed) == Some(generation)
    })
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[derive(Default)]
struct Tracker {
    /// When each object was first seen Ready, by `namespace/name`.
    ready: HashMap<String, Instant>,
    errors: u64,
    last_error: Option<String>,
}

/// One watch of every benchmark object of one kind (by label), recording when each is first
/// seen Ready.
struct Watch {
    tracker: Arc<Mutex<Tracker>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start<K: Benched>(client: &Client) -> Watch {
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let notify = Arc::new(Notify::new());
        let api: Api<K> = Api::all(client.clone());
        let config = watcher::Config::default()
            .labels(&format!("{BENCH_LABEL}={BENCH_LABEL_VALUE}"))
            .page_size(500);
        let (t, n) = (tracker.clone(), notify.clone());
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(event) = events.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        if is_ready(&object) {
                            let k =
                                key(&object.namespace().unwrap_or_default(), &object.name_any());
                            let new = !lock(&t).ready.contains_key(&k);
                            if new {
                                lock(&t).ready.insert(k, now);
                                n.notify_waiters();
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let mut tracker = lock(&t);
                        tracker.errors += 1;
                        tracker.last_error = Some(e.to_string());
                    }
                }
            }
        });
        Watch {
            tracker,
            notify,
            task,
        }
    }

    fn ready_at(&self, key: &str) -> Option<Instant> {
        lock(&self.tracker).ready.get(key).copied()
    }

    /// How many of `keys` were seen Ready, and when the last of them was.
    fn count(&self, keys: &[String]) -> (usize, Option<Instant>) {
        let tracker = lock(&self.tracker);
        let times: Vec<Instant> = keys
            .iter()
            .filter_map(|k| tracker.ready.get(k).copied())
            .collect();
        (times.len(), times.into_iter().max())
    }

    fn errors(&self) -> (u64, Option<String>) {
        let tracker = lock(&self.tracker);
        (tracker.errors, tracker.last_error.clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Creating Topics (and ConsumerGroups, Producers)

/// The object `name` of kind `K` with `spec`, labelled as the benchmark's.
fn manifest<K: Benched>(name: &str, spec: Value) -> Result<K, Error> {
    Ok(serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "labels": {BENCH_LABEL: BENCH_LABEL_VALUE}},
        "spec": spec,
    }))?)
}

fn topic_manifest(name: &str) -> Result<Topic, Error> {
    manifest(
        name,
        json!({"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 1}),
    )
}

/// Creates one Topic, as [`create_object`] does.
async fn create_topic(client: &Client, namespace: &str, name: &str) -> Result<(), String> {
    let topic = topic_manifest(name).map_err(|e| e.to_string())?;
    create_object(client, namespace, &topic).await
}

/// Creates one object, retrying what a busy API server may answer (429, 5xx, a broken
/// connection); an AlreadyExists after a retry means the earlier attempt got through.
async fn create_object<K: Benched>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<(), String> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let retriable = match api.create(&PostParams::default(), object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() && attempt > 1 => {
                return Ok(());
            }
            Err(kube::Error::Api(status)) => {
                (status.code == 429 || status.code >= 500, status.to_string())
            }
            Err(e) => (true, e.to_string()),
        };
        match retriable {
            (true, _) if attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            (_, message) => {
                return Err(format!(
                    "creating {} {namespace}/{}: {message}",
                    K::kind(&()),
                    object.name_any()
                ));
            }
        }
    }
}

/// N creates under way, `streams` at a time.
struct Burst {
    keys: Vec<String>,
    started: Instant,
    returned: Arc<AtomicUsize>,
    last_returned: Arc<Mutex<Option<Instant>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl Burst {
    /// Creates the Topics `(namespace, name)`.
    fn start(client: &Client, topics: Vec<(String, String)>, streams: usize) -> Burst {
        let client = client.clone();
        Burst::start_with(topics, streams, move |ns, name| {
            let client = client.clone();
            async move { create_topic(&client, &ns, &name).await }
        })
    }

    /// Runs `create(namespace, name)` for each object.
    fn start_with<F, Fut>(objects: Vec<(String, String)>, streams: usize, create: F) -> Burst
    where
        F: Fn(String, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let keys = objects.iter().map(|(ns, name)| key(ns, name)).collect();
        let returned = Arc::new(AtomicUsize::new(0));
        let last_returned = Arc::new(Mutex::new(None));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (r, l, f) = (returned.clone(), last_returned.clone(), failed.clone());
        let started = Instant::now();
        tokio::spawn(async move {
            futures::stream::iter(objects)
                .map(move |(ns, name)| create(ns, name))
                .buffer_unordered(streams)
                .for_each(|result| {
                    if let Err(e) = result {
                        lock(&f).push(e);
                    }
                    *lock(&l) = Some(Instant::now());
                    r.fetch_add(1, Ordering::SeqCst);
                    futures::future::ready(())
                })
                .await;
        });
        Burst {
            keys,
            started,
            returned,
            last_returned,
            failed,
        }
    }

    fn returned(&self) -> usize {
        self.returned.load(Ordering::SeqCst)
    }

    fn creates_done(&self) -> bool {
        self.returned() >= self.keys.len()
    }

    fn failed(&self) -> Vec<String> {
        lock(&self.failed).clone()
    }

    fn creates_seconds(&self) -> Option<f64> {
        lock(&self.last_returned)
            .filter(|_| self.creates_done())
            .map(|t| (t - self.started).as_secs_f64())
    }
}

/// A rate as a number when everything it counts was done, else a lower bound saying what was
/// not (`done`: "Ready", "created", "written").
fn rate_cell(complete: bool, rate: f64, done: &str) -> Cell {
    if complete {
        Cell::number(rate, 1)
    } else {
        Cell::text(format!("< {} (not all {done})", grouped(rate, 1)))
    }
}

/// Where a burst got to.
struct Outcome {
    ready: usize,
    expected: usize,
    /// From the first create to the last Topic seen Ready (all of them), else to giving up.
    seconds: f64,
    complete: bool,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.ready as f64 / self.seconds.max(1e-3)
    }

    fn seconds_cell(&self) -> Cell {
        if self.complete {
            Cell::number(self.seconds, 1)
        } else {
            Cell::text(format!(
                "not reached: {} of {} Ready after {} s",
                grouped(self.ready as f64, 0),
                grouped(self.expected as f64, 0),
                grouped(self.seconds, 0)
            ))
        }
    }

    fn rate_cell(&self) -> Cell {
        rate_cell(self.complete, self.rate(), "Ready")
    }
}

/// What a steady-state window counted.
struct SteadyWindow {
    seconds: f64,
    /// Refresh intervals in it.
    refreshes: f64,
    /// kube-apiserver's requests during it (`None`: its /metrics could not be read).
    api: Option<ApiRequests>,
    /// The operator's CPU seconds during it.
    cpu_seconds: Option<f64>,
    /// The operator's counters during it.
    work: Option<Counters>,
}

// ---------------------------------------------------------------------------------------------
// Kafka alone: the broker's own rate

/// How long the broker is given to remove the files of deleted topics: Kafka renames a deleted
/// partition's directory to `<topic>-<partition>.<id>-delete` and removes it
/// `file.delete.delay.ms` (60 s by default) later, work that would otherwise land in what is
/// measured next.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Quiet after that, before what follows.
const SETTLE_QUIET: Duration = Duration::from_secs(5);
/// Tries of each `CreateTopics` chunk (the topics of a chunk that failed are asked again).
const CREATE_ATTEMPTS: u32 = 3;
/// A figure of a phase not run.
const SKIPPED: &str = "skipped";

/// Entries of the broker's data directory that are not settled: partitions being deleted (their
/// files removed later) and, with `prefix`, partitions of topics whose names start with it.
fn unsettled<'e>(entries: impl IntoIterator<Item = &'e str>, prefix: Option<&str>) -> usize {
    entries
        .into_iter()
        .filter(|e| e.ends_with("-delete") || prefix.is_some_and(|p| e.starts_with(p)))
        .count()
}

/// What waiting for the broker to settle found.
struct Settled {
    seconds: f64,
    /// Partition directories still there when the wait ended (`None`: the data directory
    /// could not be read, and a fixed pause was made instead).
    left: Option<usize>,
}

/// Waits until the broker's data directory `data_dir` holds no partition being deleted (and
/// none of `prefix`), at most [`SETTLE_TIMEOUT`], then [`SETTLE_QUIET`] more (skipped when
/// nothing was waited for and no `prefix` given).
async fn settle_broker(data_dir: &Path, prefix: Option<&str>, when: &str) -> Settled {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut waited = prefix.is_some();
    let left = loop {
        let left = match std::fs::read_dir(data_dir) {
            Ok(entries) => {
                let names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                unsettled(names.iter().map(String::as_str), prefix)
            }
            Err(e) => {
                say(format!(
                    "{when}: cannot read the broker's data directory {}: {e}; pausing {} s \
                     instead",
                    data_dir.display(),
                    SETTLE_QUIET.as_secs()
                ));
                tokio::time::sleep(SETTLE_QUIET).await;
                return Settled {
                    seconds: started.elapsed().as_secs_f64(),
                    left: None,
                };
            }
        };
        if left == 0 || started.elapsed() >= SETTLE_TIMEOUT {
            break left;
        }
        waited = true;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            say(format!(
                "{when}: the broker has {} partition directories of deleted topics to remove \
                 ({} s)",
                grouped(left as f64, 0),
                started.elapsed().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if left > 0 {
        say(format!(
            "{when}: {} partition directories still there after {} s; going on",
            grouped(left as f64, 0),
            SETTLE_TIMEOUT.as_secs()
        ));
    }
    if waited {
        tokio::time::sleep(SETTLE_QUIET).await;
        say(format!(
            "{when}: broker settled after {:.0} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Settled {
        seconds: started.elapsed().as_secs_f64(),
        left: Some(left),
    }
}

/// What creating topics on the broker directly took.
struct KafkaAlone {
    expected: usize,
    /// Topics a `Metadata` describe has shown (with their partition).
    described: usize,
    /// From the first `CreateTopics` to the describe that showed the last topic, or to giving up.
    seconds: f64,
    /// From the first `CreateTopics` to the last response.
    creates_seconds: f64,
    chunks: usize,
    /// `CreateTopics` requests sent (more than `chunks` when some were asked again).
    requests: usize,
    /// Topics whose create failed every try, with the last error.
    failed: Vec<(String, String)>,
}

impl KafkaAlone {
    fn complete(&self) -> bool {
        self.described >= self.expected
    }

    fn rate(&self) -> f64 {
        self.described as f64 / self.seconds.max(1e-3)
    }

    fn seconds_cell(&self) -> Cell {
        if self.complete() {
            Cell::number(self.seconds, 1)
        } else {
            Cell::text(format!(
                "not reached: {} of {} in Metadata after {} s ({} creates failed)",
                grouped(self.described as f64, 0),
                grouped(self.expected as f64, 0),
                grouped(self.seconds, 0),
                grouped(self.failed.len() as f64, 0)
            ))
        }
    }

    fn rate_cell(&self) -> Cell {
        rate_cell(self.complete(), self.rate(), "created")
    }

    fn to_json(&self) -> Value {
        json!({
            "topics": self.expected,
            "described": self.described,
            "seconds": self.seconds,
            "createsSeconds": self.creates_seconds,
            "chunks": self.chunks,
            "createTopicsRequests": self.requests,
            "failed": {"count": self.failed.len(), "first": self.failed.first()},
        })
    }
}

/// Creates `names` (1 partition, replication 1) with `admin` in `CreateTopics` requests of
/// [`CREATE_CHUNK`], one at a time (the operator's batcher has at most one in flight per
/// cluster: its client has one connection per broker), then describes them until `Metadata`
/// has shown every one created, for at most `timeout` from the first create.
async fn kafka_alone_create(admin: &KafkaAdmin, names: &[String], timeout: Duration) -> KafkaAlone {
    let started = Instant::now();
    let mut requests = 0;
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut last_progress = Instant::now();
    for (done, chunk) in names.chunks(CREATE_CHUNK).enumerate() {
        let mut todo: Vec<NewTopicRequest> = chunk
            .iter()
            .map(|name| NewTopicRequest {
                name: name.clone(),
                partitions: 1,
                replication_factor: Some(1),
                config: BTreeMap::new(),
            })
            .collect();
        for attempt in 1..=CREATE_ATTEMPTS {
            requests += 1;
            let asked = std::mem::take(&mut todo);
            // A topic created by an earlier try that seemed to fail answers AlreadyExists: Ok.
            let errors: Vec<(NewTopicRequest, String)> = match admin.create_topics(&asked).await {
                Ok(results) => asked
                    .into_iter()
                    .zip(results)
                    .filter_map(|(request, result)| result.err().map(|e| (request, e.to_string())))
                    .collect(),
                Err(e) => {
                    let message = e.to_string();
                    asked.into_iter().map(|r| (r, message.clone())).collect()
                }
            };
            let Some((_, first)) = errors.first() else {
                break;
            };
            if attempt == CREATE_ATTEMPTS {
                failed.extend(errors.into_iter().map(|(r, message)| (r.name, message)));
                break;
            }
            say(format!(
                "Kafka alone: {} creates of a chunk failed ({first}); asking again",
                errors.len()
            ));
            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            todo = errors.into_iter().map(|(r, _)| r).collect();
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            say(format!(
                "Kafka alone: {} of {} topics asked after {} s",
                grouped(((done + 1) * CREATE_CHUNK).min(names.len()) as f64, 0),
                grouped(names.len() as f64, 0),
                started.elapsed().as_secs()
            ));
        }
    }
    let creates_seconds = started.elapsed().as_secs_f64();
    let mut remaining: Vec<String> = names
        .iter()
        .filter(|n| !failed.iter().any(|(f, _)| f == *n))
        .cloned()
        .collect();
    let mut last_error: Option<String> = None;
    loop {
        match admin.describe_topics(&remaining).await {
            // Kept: those not shown yet (with their partition).
            Ok(found) => remaining.retain(|n| found.get(n).is_none_or(|d| d.partitions < 1)),
            Err(e) => last_error = Some(e.to_string()),
        }
        if remaining.is_empty() {
            break;
        }
        if started.elapsed() >= timeout {
            say(format!(
                "Kafka alone: giving up after {} s with {} topics not in Metadata{}",
                started.elapsed().as_secs(),
                grouped(remaining.len() as f64, 0),
                last_error
                    .as_ref()
                    .map(|e| format!(" (the last describe error: {e})"))
                    .unwrap_or_default()
            ));
            break;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            say(format!(
                "Kafka alone: {} topics not in Metadata yet after {} s",
                grouped(remaining.len() as f64, 0),
                started.elapsed().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    KafkaAlone {
        expected: names.len(),
        described: names.len() - failed.len() - remaining.len(),
        seconds: started.elapsed().as_secs_f64(),
        creates_seconds,
        chunks: names.len().div_ceil(CREATE_CHUNK),
        requests,
        failed,
    }
}

/// The operator's burst rate over a ceiling's (Kafka alone's, API alone's), from their cells: a
/// number when both are, "skipped" when either was.
fn ratio_cell(burst_rate: Option<&Cell>, alone_rate: Option<&Cell>) -> Cell {
    let skipped = |c: Option<&Cell>| c.is_some_and(|c| c.value.is_none() && c.text == SKIPPED);
    if skipped(burst_rate) || skipped(alone_rate) {
        return Cell::text(SKIPPED);
    }
    match (
        burst_rate.and_then(|c| c.value),
        alone_rate.and_then(|c| c.value),
    ) {
        (Some(burst), Some(alone)) if alone > 0.0 => Cell::number(burst / alone, 2),
        _ => Cell::text("n/a (not all Ready or not all created)"),
    }
}

// ---------------------------------------------------------------------------------------------
// API alone: the API server's own rate

/// The status the operator writes for a Ready Topic, cut to what makes it Ready: the generation
/// observed (a new Topic's, 1) and a `Ready=True` condition for it. As a merge patch of the
/// status subresource.
fn ready_status_patch(name: &str) -> Value {
    let status = TopicStatus {
        observed_generation: Some(1),
        conditions: vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "TopicReady",
            format!("topic '{name}' exists with 1 partitions and replication factor 1"),
            Some(1),
        )],
        ..TopicStatus::default()
    };
    json!({"status": status})
}

/// Writes a Ready status of one Topic (see [`ready_status_patch`]), retrying what a busy API
/// server may answer (429, 5xx, a broken connection), as [`create_topic`] does.
async fn write_ready_status(
    client: &Client,
    namespace: &str,
    name: &str,
    how: StatusWrite,
) -> Result<(), String> {
    let api: Api<Topic> = Api::namespaced(client.clone(), namespace);
    let (patch, params) = match how {
        StatusWrite::Merge => (
            Patch::Merge(ready_status_patch(name)),
            PatchParams::default(),
        ),
        StatusWrite::Apply => {
            let mut body = ready_status_patch(name);
            body["apiVersion"] = json!("exactly.dev/v1alpha1");
            body["kind"] = json!("Topic");
            (
                Patch::Apply(body),
                PatchParams::apply("exactly-operator").force(),
            )
        }
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let retriable = match api.patch_status(name, &params, &patch).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) => {
                (status.code == 429 || status.code >= 500, status.to_string())
            }
            Err(e) => (true, e.to_string()),
        };
        match retriable {
            (true, _) if attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            (_, message) => {
                return Err(format!(
                    "writing the status of Topic {namespace}/{name}: {message}"
                ));
            }
        }
    }
}

/// What one request per Topic, `streams` at a time, came to.
struct Writes {
    expected: usize,
    /// The Topics whose request succeeded.
    written: Vec<(String, String)>,
    failed: Vec<String>,
    /// From the first request to the last one returned, or to giving up.
    seconds: f64,
}

impl Writes {
    fn complete(&self) -> bool {
        self.written.len() >= self.expected
    }

    fn to_json(&self) -> Value {
        json!({
            "of": self.expected,
            "written": self.written.len(),
            "seconds": self.seconds,
            "failed": {"count": self.failed.len(), "first": self.failed.first()},
        })
    }
}

/// Runs `request` for each Topic, `streams` at a time as a [`Burst`]'s creators do, until every
/// one has returned or `deadline` has passed (the rest are then dropped).
async fn write_all<F, Fut>(
    label: &str,
    topics: Vec<(String, String)>,
    streams: usize,
    deadline: Instant,
    request: F,
) -> Writes
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let expected = topics.len();
    let started = Instant::now();
    let mut last_returned = started;
    let mut last_progress = Instant::now();
    let mut written = Vec::new();
    let mut failed = Vec::new();
    let mut results = std::pin::pin!(
        futures::stream::iter(topics)
            .map(|(ns, name)| {
                let call = request(ns.clone(), name.clone());
                async move { (ns, name, call.await) }
            })
            .buffer_unordered(streams)
    );
    let finished = loop {
        let next = tokio::time::timeout_at(deadline.into(), results.next()).await;
        match next {
            Ok(Some((ns, name, result))) => {
                last_returned = Instant::now();
                match result {
                    Ok(()) => written.push((ns, name)),
                    Err(e) => failed.push(e),
                }
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            say(format!(
                "{label}: {} of {} returned after {} s",
                grouped((written.len() + failed.len()) as f64, 0),
                grouped(expected as f64, 0),
                started.elapsed().as_secs()
            ));
        }
    };
    if !finished {
        say(format!(
            "{label}: giving up after {} s with {} of {} returned",
            started.elapsed().as_secs(),
            grouped((written.len() + failed.len()) as f64, 0),
            grouped(expected as f64, 0)
        ));
    }
    if let Some(first) = failed.first() {
        say(format!(
            "{label}: {} failed; the first: {first}",
            failed.len()
        ));
    }
    Writes {
        expected,
        written,
        failed,
        seconds: if finished {
            (last_returned - started).as_secs_f64()
        } else {
            started.elapsed().as_secs_f64()
        },
    }
}

/// What N creates, then N status writes, took on the API server with no operator running.
struct ApiAlone {
    creates: Writes,
    statuses: Writes,
}

impl ApiAlone {
    fn expected(&self) -> usize {
        self.creates.expected
    }

    fn seconds(&self) -> f64 {
        self.creates.seconds + self.statuses.seconds
    }

    fn complete(&self) -> bool {
        self.creates.complete() && self.statuses.complete()
    }

    /// Topics created (and given a status) per second.
    fn creates_rate(&self) -> f64 {
        self.creates.written.len() as f64 / self.creates.seconds.max(1e-3)
    }

    fn rate(&self) -> f64 {
        self.statuses.written.len() as f64 / self.seconds().max(1e-3)
    }

    fn creates_seconds_cell(&self) -> Cell {
        if self.creates.complete() {
            Cell::number(self.creates.seconds, 1)
        } else {
            Cell::text(format!(
                "not reached: {} of {} created after {} s ({} failed)",
                grouped(self.creates.written.len() as f64, 0),
                grouped(self.expected() as f64, 0),
                grouped(self.creates.seconds, 0),
                grouped(self.creates.failed.len() as f64, 0)
            ))
        }
    }

    fn creates_rate_cell(&self) -> Cell {
        rate_cell(self.creates.complete(), self.creates_rate(), "created")
    }

    fn seconds_cell(&self) -> Cell {
        if self.complete() {
            Cell::number(self.seconds(), 1)
        } else {
            Cell::text(format!(
                "not reached: {} of {} with a status after {} s ({} creates and {} status \
                 writes failed)",
                grouped(self.statuses.written.len() as f64, 0),
                grouped(self.expected() as f64, 0),
                grouped(self.seconds(), 0),
                grouped(self.creates.failed.len() as f64, 0),
                grouped(self.statuses.failed.len() as f64, 0)
            ))
        }
    }

    fn rate_cell(&self) -> Cell {
        rate_cell(self.complete(), self.rate(), "written")
    }

    fn to_json(&self) -> Value {
        json!({
            "topics": self.expected(),
            "creates": self.creates.to_json(),
            "statuses": self.statuses.to_json(),
            "seconds": self.seconds(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// One size

struct SizeRun<'a> {
    env: &'a Environment,
    client: &'a Client,
    args: &'a Args,
    index: usize,
    size: usize,
    pending_size: usize,
    burst_namespaces: Vec<String>,
    pending_namespaces: Vec<String>,
    probe_namespace: String,
    pending_probe_namespace: String,
    /// The `others` phase's namespaces made so far (each deleted at the end of its kind).
    other_namespaces: Vec<String>,
    /// Kafka topics made by this size, deleted before the next one.
    kafka_topics: Vec<String>,
    cells: BTreeMap<&'static str, Cell>,
    notes: Vec<String>,
    details: serde_json::Map<String, Value>,
    cpu: Vec<CpuUse>,
}

impl<'a> SizeRun<'a> {
    fn new(
        env: &'a Environment,
        client: &'a Client,
        args: &'a Args,
        index: usize,
        size: usize,
    ) -> SizeRun<'a> {
        let spread = |what: &str| {
            (0..args.namespaces)
                .map(|j| format!("bench-{index}-{what}-{j}"))
                .collect()
        };
        SizeRun {
            env,
            client,
            args,
            index,
            size,
            pending_size: args.pending_size.unwrap_or(size),
            burst_namespaces: spread("burst"),
            pending_namespaces: spread("pending"),
            probe_namespace: format!("bench-probe-{index}"),
            pending_probe_namespace: format!("bench-probe-pending-{index}"),
            other_namespaces: Vec::new(),
            kafka_topics: Vec::new(),
            cells: BTreeMap::new(),
            notes: Vec::new(),
            details: serde_json::Map::new(),
            cpu: Vec::new(),
        }
    }

    /// The processes whose CPU a phase records: the environment's, the operator (when given)
    /// and the benchmark itself.
    fn cpu_processes(&self, operator: Option<u32>) -> Vec<(String, u32)> {
        let mut processes: Vec<(String, u32)> = self
            .env
            .component_pids()
            .into_iter()
            .map(|(name, pid)| (name.to_string(), pid))
            .collect();
        processes.extend(operator.map(|pid| ("operator".to_string(), pid)));
        processes.push(("bench".to_string(), std::process::id()));
        processes
    }

    /// Records the CPU used since `before`, and says it.
    fn record_cpu(
        &mut self,
        key: &'static str,
        label: &'static str,
        what: String,
        before: &CpuMark,
    ) {
        let after = CpuMark::take(
            &before
                .processes
                .iter()
                .map(|(name, pid, _)| (name.clone(), *pid))
                .collect::<Vec<_>>(),
        );
        let used = CpuUse::between(key, label, what, before, &after);
        say(format!("CPU during {}", used.text()));
        self.cpu.push(used);
    }

    fn namespaces(&self) -> Vec<String> {
        let mut all = self.burst_namespaces.clone();
        all.extend(self.pending_namespaces.iter().cloned());
        all.push(self.probe_namespace.clone());
        all.push(self.pending_probe_namespace.clone());
        all
    }

    fn set(&mut self, key: &'static str, cell: Cell) {
        self.cells.insert(key, cell);
    }

    fn detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.to_string(), value);
    }

    fn runs(&self, phase: Phase) -> bool {
        self.args.phases.contains(&phase)
    }

    /// Marks `keys` as figures of a phase not run.
    fn skip(&mut self, keys: &[&'static str]) {
        for key in keys {
            self.set(key, Cell::text(SKIPPED));
        }
    }

    /// "Kafka alone": N topics created on the broker directly, timed to all in Metadata, then
    /// deleted; the broker left to settle before and after.
    async fn kafka_alone(&mut self) -> Result<(), Error> {
        let n = self.size;
        let data_dir = self.env.dir.join("kafka");
        let before = settle_broker(&data_dir, None, "before Kafka alone").await;
        let prefix = format!("bench-ceiling-{n}-");
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
        say(format!(
            "Kafka alone: {} topics created on the broker directly, no operator running \
             (CreateTopics of {CREATE_CHUNK}, one at a time)",
            grouped(n as f64, 0)
        ));
        let admin = KafkaAdmin::connect(&self.env.bootstrap_servers)?;
        let timeout = Duration::from_secs(self.args.ready_timeout);
        let cpu = CpuMark::take(&self.cpu_processes(None));
        let alone = kafka_alone_create(&admin, &names, timeout).await;
        self.record_cpu(
            "kafkaAlone",
            "Kafka alone",
            format!("{} topics", grouped(n as f64, 0)),
            &cpu,
        );
        say(format!(
            "Kafka alone: {} of {} in Metadata after {:.1} s ({:.1} topics/s; last CreateTopics \
             returned after {:.1} s, {} requests)",
            grouped(alone.described as f64, 0),
            grouped(n as f64, 0),
            alone.seconds,
            alone.rate(),
            alone.creates_seconds,
            alone.requests
        ));
        self.set("burstKafkaAloneSeconds", alone.seconds_cell());
        self.set("burstKafkaAloneRate", alone.rate_cell());
        if let Some((name, first)) = alone.failed.first() {
            self.notes.push(format!(
                "Kafka alone: {} of {n} creates failed after {CREATE_ATTEMPTS} tries; the first, \
                 {name}: {first}",
                alone.failed.len()
            ));
        }
        say("Kafka alone: deleting its topics");
        if let Err(e) = delete_kafka_topics(&self.env.bootstrap_servers, &names).await {
            say(format!("deleting the Kafka-alone topics: {e}"));
            // The clean-up between sizes tries again.
            self.kafka_topics.extend(names.iter().cloned());
        }
        let after = settle_broker(&data_dir, Some(&prefix), "after Kafka alone").await;
        for (settled, when) in [
            (&before, "when Kafka alone started"),
            (&after, "when the operator started, after Kafka alone"),
        ] {
            if let Some(left) = settled.left.filter(|left| *left > 0) {
                self.notes.push(format!(
                    "the broker still had {left} partition directories of deleted topics to \
                     remove {when} (waited {} s)",
                    settled.seconds.round()
                ));
            }
        }
        let mut detail = alone.to_json();
        detail["settleBefore"] = json!({"seconds": before.seconds, "left": before.left});
        detail["settleAfter"] = json!({"seconds": after.seconds, "left": after.left});
        self.detail("kafkaAlone", detail);
        Ok(())
    }

    /// "API alone": N Topics created through the API server in a namespace of their own by
    /// `--streams` creators, then a Ready status written for each by as many, both timed; with
    /// no operator running. The Topics and the namespace are deleted again (not timed).
    async fn api_alone(&mut self) -> Result<(), Error> {
        let n = self.size;
        let ns = format!("bench-api-alone-{}", self.index);
        let streams = self.args.streams;
        let how = self.args.api_alone_status;
        say(format!(
            "API alone: {} Topics created in {ns} by {streams} creators, then a Ready status \
             written for each, no operator running",
            grouped(n as f64, 0)
        ));
        create_bench_namespace(self.client, &ns).await?;
        let index = self.index;
        let topics: Vec<(String, String)> = (0..n)
            .map(|k| (ns.clone(), format!("a{index}-{k:06}")))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(self.args.ready_timeout);
        let client = self.client;
        let cpu = CpuMark::take(&self.cpu_processes(None));
        let creates = write_all(
            "API alone: creates",
            topics,
            streams,
            deadline,
            |ns, name| async move { create_topic(client, &ns, &name).await },
        )
        .await;
        let created = creates.written.clone();
        let statuses = write_all(
            "API alone: status writes",
            created,
            streams,
            deadline,
            |ns, name| async move { write_ready_status(client, &ns, &name, how).await },
        )
        .await;
        self.record_cpu(
            "apiAlone",
            "API alone, create + status",
            format!("{} Topics", grouped(n as f64, 0)),
            &cpu,
        );
        let alone = ApiAlone { creates, statuses };
        say(format!(
            "API alone: {} of {} created in {:.1} s ({:.1} Topics/s), {} statuses written in \
             {:.1} s more: {:.1} s in all ({:.1} Topics/s)",
            grouped(alone.creates.written.len() as f64, 0),
            grouped(n as f64, 0),
            alone.creates.seconds,
            alone.creates_rate(),
            grouped(alone.statuses.written.len() as f64, 0),
            alone.statuses.seconds,
            alone.seconds(),
            alone.rate()
        ));
        self.set("burstApiAloneCreatesSeconds", alone.creates_seconds_cell());
        self.set("burstApiAloneCreatesRate", alone.creates_rate_cell());
        self.set("burstApiAloneSeconds", alone.seconds_cell());
        self.set("burstApiAloneRate", alone.rate_cell());
        for (what, writes) in [
            ("creates", &alone.creates),
            ("status writes", &alone.statuses),
        ] {
            if let Some(first) = writes.failed.first() {
                self.notes.push(format!(
                    "API alone: {} of {} {what} failed; the first: {first}",
                    writes.failed.len(),
                    writes.expected
                ));
            }
        }
        let mut detail = alone.to_json();
        detail["namespace"] = json!(ns);
        detail["streams"] = json!(streams);
        // So that the operator started next finds none of them.
        let clean_up = self
            .delete_namespace_with::<Topic>(
                "API alone",
                &ns,
                Duration::from_secs(120),
                "the operator, started next, saw them",
            )
            .await;
        detail["cleanUpSeconds"] = json!(clean_up);
        self.detail("apiAlone", detail);
        Ok(())
    }

    /// Deletes every `K` of namespace `ns` and waits until a list shows none, then deletes the
    /// namespace and waits until it is gone, at most `timeout` each; a note says what was not
    /// done in time (`label` says whose they were, `after` what a leftover would disturb). The
    /// seconds it took.
    async fn delete_namespace_with<K: Benched>(
        &mut self,
        label: &str,
        ns: &str,
        timeout: Duration,
        after: &str,
    ) -> f64 {
        let started = Instant::now();
        let kind = K::kind(&());
        say(format!("{label}: deleting its {kind}s and namespace {ns}"));
        let objects: Api<K> = Api::namespaced(self.client.clone(), ns);
        if let Err(e) = objects
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
        {
            say(format!("deleting the {kind}s of {ns}: {e}"));
        }
        let mut left = None;
        let waiting = Instant::now();
        while waiting.elapsed() < timeout {
            left = match objects.list(&ListParams::default().limit(1)).await {
                Ok(list) => Some(list.items.len()),
                Err(e) => {
                    say(format!("listing the {kind}s of {ns}: {e}"));
                    None
                }
            };
            if left == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if left != Some(0) {
            self.notes.push(format!(
                "{label}: {kind}s were still in {ns} {} s after they were deleted ({after})",
                timeout.as_secs()
            ));
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Err(e) = namespaces.delete(ns, &DeleteParams::default()).await {
            say(format!("deleting namespace {ns}: {e}"));
        }
        let waiting = Instant::now();
        loop {
            if matches!(namespaces.get_opt(ns).await, Ok(None)) {
                break;
            }
            if waiting.elapsed() >= timeout {
                self.notes.push(format!(
                    "{label}: namespace {ns} was not gone {} s after it was deleted ({after})",
                    timeout.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        say(format!("{label}: cleaned up in {seconds:.1} s"));
        seconds
    }

    /// Topic `(namespace, name)`s of a burst, names unique on the broker (every namespace's
    /// cluster is the same broker, and two Topics claiming one Kafka topic conflict).
    fn burst_topics(
        &mut self,
        prefix: &str,
        namespaces: &[String],
        n: usize,
    ) -> Vec<(String, String)> {
        let index = self.index;
        let topics: Vec<(String, String)> = (0..n)
            .map(|k| {
                let j = k % namespaces.len();
                (namespaces[j].clone(), format!("{prefix}{index}-{j}-{k:06}"))
            })
            .collect();
        self.kafka_topics
            .extend(topics.iter().map(|(_, name)| name.clone()));
        topics
    }

    async fn measure(
        &mut self,
        operator_binary: &Path,
        work_dir: &Path,
    ) -> Result<SizeReport, Error> {
        let n = self.size;
        // Before anything of this size runs: the broker on its own.
        if self.args.no_ceiling {
            self.skip(KAFKA_ALONE_FIGURES);
        } else {
            self.kafka_alone().await?;
        }
        // Then the API server on its own, still before the operator starts.
        if self.args.no_api_alone {
            self.skip(API_ALONE_FIGURES);
        } else {
            self.api_alone().await?;
        }
        say(format!(
            "size {}: namespaces {} with a KafkaCluster each",
            grouped(n as f64, 0),
            self.namespaces().join(", ")
        ));
        self.create_namespaces().await?;
        let watch = Watch::start::<Topic>(self.client);
        let log = work_dir.join(format!("operator-{}-{n}.log", self.index));
        let mut operator = Operator::start(
            operator_binary,
            &self.args.operator_args,
            &self.env.kubeconfig,
            &log,
        )?;
        say(format!(
            "operator pid {} ({} {}), log {}",
            operator.pid(),
            operator_binary.display(),
            operator.args.join(" "),
            log.display()
        ));
        let result = self.phases(&mut operator, &watch).await;
        if let Some(peak) = operator.peak_kib() {
            self.set("rssPeakMib", Cell::number(mib(peak), 1));
        }
        let (errors, last) = watch.errors();
        if let (true, Some(last)) = (errors > 0, &last) {
            // The watch restarts on its own, but Ready times seen late would be too long.
            self.notes.push(format!(
                "the benchmark's Topic watch failed {errors} times (the last: {last})"
            ));
        }
        self.detail("watchErrors", json!({"count": errors, "last": last}));
        self.detail("operatorLog", json!(log));
        self.detail("operatorPid", json!(operator.pid()));
        operator.stop();
        result?;
        let ratio = ratio_cell(
            self.cells.get("burstRate"),
            self.cells.get("burstKafkaAloneRate"),
        );
        self.set(RATIO_FIGURE, ratio);
        let ratio = ratio_cell(
            self.cells.get("burstRate"),
            self.cells.get("burstApiAloneRate"),
        );
        self.set(API_RATIO_FIGURE, ratio);
        Ok(SizeReport {
            size: n,
            pending_size: self.pending_size,
            clusters: self.namespaces().len(),
            cells: std::mem::take(&mut self.cells),
            notes: std::mem::take(&mut self.notes),
            details: std::mem::take(&mut self.details),
            cpu: std::mem::take(&mut self.cpu),
        })
    }

    async fn create_namespaces(&self) -> Result<(), Error> {
        for ns in self.namespaces() {
            self.create_namespace_with_cluster(&ns).await?;
        }
        Ok(())
    }

    /// The namespace `ns`, with the KafkaCluster [`CLUSTER`] on the broker.
    async fn create_namespace_with_cluster(&self, ns: &str) -> Result<(), Error> {
        create_bench_namespace(self.client, ns).await?;
        let cluster: KafkaCluster = serde_json::from_value(json!({
            "apiVersion": "exactly.dev/v1alpha1",
            "kind": "KafkaCluster",
            "metadata": {"name": CLUSTER, "labels": {BENCH_LABEL: BENCH_LABEL_VALUE}},
            "spec": {"external": {"bootstrapServers": self.env.bootstrap_servers}},
        }))?;
        Api::<KafkaCluster>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &cluster)
            .await
            .map_err(|e| format!("creating KafkaCluster {ns}/{CLUSTER}: {e}"))?;
        Ok(())
    }

    /// Waits until the KafkaCluster of each of `namespaces` is Ready, at most 120 s.
    async fn wait_clusters_ready(
        &self,
        operator: &mut Operator,
        namespaces: &[String],
    ) -> Result<(), Error> {
        let started = Instant::now();
        let timeout = Duration::from_secs(120);
        let mut last_progress = Instant::now();
        loop {
            operator.check_alive()?;
            let mut not_ready = Vec::new();
            for ns in namespaces {
                let api: Api<KafkaCluster> = Api::namespaced(self.client.clone(), ns);
                let ready = api.get_opt(CLUSTER).await?.is_some_and(|c| {
                    c.status.is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
                    })
                });
                if !ready {
                    not_ready.push(ns.as_str());
                }
            }
            if not_ready.is_empty() {
                say(format!(
                    "clusters Ready after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "KafkaCluster {CLUSTER} not Ready after {timeout:?} in {}",
                    not_ready.join(", ")
                )
                .into());
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                say(format!(
                    "waiting for the clusters in {}",
                    not_ready.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn phases(&mut self, operator: &mut Operator, watch: &Watch) -> Result<(), Error> {
        let n = self.size;
        operator.wait_serving(Duration::from_secs(60)).await?;
        self.wait_clusters_ready(operator, &self.namespaces())
            .await?;
        tokio::time::sleep(IDLE_BEFORE_BASELINE).await;
        let idle_kib = operator
            .memory_kib()
            .map(|(rss, _)| rss)
            .ok_or("cannot read the operator's /proc status")?;
        self.set("rssIdleMib", Cell::number(mib(idle_kib), 1));
        say(format!(
            "operator RSS with 0 Topics: {:.1} MiB",
            mib(idle_kib)
        ));

        // Topics Ready and steady when the second burst starts.
        let mut steady_topics = 0;

        // 1 and 2: the burst, and the work it took.
        if self.runs(Phase::Burst) {
            self.burst(operator, watch).await?;
            steady_topics += n;
        } else {
            self.skip(Phase::Burst.figures());
            self.notes.push(
                "the burst was not run (--phases): what follows ran without the N Topics".into(),
            );
        }

        // 3: single changes while the N are steady.
        if self.runs(Phase::Burst) || self.runs(Phase::Probes) {
            let when = if self.runs(Phase::Probes) {
                "before the probes"
            } else {
                "after the burst"
            };
            self.wait_idle(operator, "Topic", when).await?;
        }
        let probes = if self.runs(Phase::Probes) {
            self.probes(operator, watch).await?
        } else {
            self.skip(Phase::Probes.figures());
            0
        };
        steady_topics += probes;
        if self.runs(Phase::Burst) {
            let steady_kib = operator.memory_kib().map(|(rss, _)| rss).unwrap_or(0);
            self.set("rssSteadyMib", Cell::number(mib(steady_kib), 1));
            self.set(
                "rssKibPerTopic",
                Cell::number((steady_kib as f64 - idle_kib as f64) / n as f64, 2),
            );
            say(format!(
                "operator RSS with {} Topics Ready (and {} probes): {:.1} MiB",
                grouped(n as f64, 0),
                probes,
                mib(steady_kib)
            ));
        }

        // 4: one change while a second burst is pending.
        if self.runs(Phase::Pending) {
            self.pending(operator, watch, steady_topics).await?;
        } else {
            self.skip(Phase::Pending.figures());
        }

        // 6: the steady state.
        if self.runs(Phase::Steady) {
            self.steady(operator).await?;
        } else {
            self.skip(Phase::Steady.figures());
        }

        // 7: as many ConsumerGroups, then Producers.
        if self.runs(Phase::Others) {
            self.other_kind::<ConsumerGroup>(operator, watch, &GROUPS)
                .await?;
            self.other_kind::<Producer>(operator, watch, &PRODUCERS)
                .await
        } else {
            self.skip(Phase::Others.figures());
            Ok(())
        }
    }

    /// 7, one kind: in fresh namespaces, each with its KafkaCluster and a Ready Topic (from
    /// `topics`, the Topic watch), N objects of the kind at once timed to all Ready; the RSS
    /// with them; the steady state; then they and their namespaces are deleted.
    async fn other_kind<K: Benched>(
        &mut self,
        operator: &mut Operator,
        topics: &Watch,
        kind: &'static OtherKind,
    ) -> Result<(), Error> {
        let n = self.size;
        let index = self.index;
        let plural = kind.plural;
        let kind_name = K::kind(&());
        let figures = &kind.figures;
        let namespaces: Vec<String> = (0..self.args.namespaces)
            .map(|j| format!("bench-{index}-{}-{j}", kind.key))
            .collect();
        say(format!(
            "{plural}: namespaces {} with a KafkaCluster and a Topic each",
            namespaces.join(", ")
        ));
        for ns in &namespaces {
            self.other_namespaces.push(ns.clone());
            self.create_namespace_with_cluster(ns).await?;
        }
        self.wait_clusters_ready(operator, &namespaces).await?;
        // The Topic the objects of a namespace name, Ready first: a ConsumerGroup whose topic
        // Kafka does not have yet is not Ready.
        let mut topic_of = HashMap::new();
        for (j, ns) in namespaces.iter().enumerate() {
            let name = format!("{}{index}-{j}-topic", kind.short);
            self.kafka_topics.push(name.clone());
            let timeout = Duration::from_secs(self.args.ready_timeout);
            let ready = self
                .probe(topics, operator, ns, &name, timeout, None)
                .await?;
            if ready.is_none() {
                return Err(
                    format!("Topic {ns}/{name}, which the {plural} name, not Ready").into(),
                );
            }
            topic_of.insert(ns.clone(), name);
        }
        let rss_before = operator.memory_kib().map(|(rss, _)| rss);

        let watch = Watch::start::<K>(self.client);
        let objects: Vec<(String, String)> = (0..n)
            .map(|k| {
                let j = k % namespaces.len();
                (
                    namespaces[j].clone(),
                    format!("{}{index}-{j}-{k:06}", kind.short),
                )
            })
            .collect();
        let counters_before = operator.counters().await;
        let cpu = CpuMark::take(&self.cpu_processes(Some(operator.pid())));
        let burst = {
            let client = self.client.clone();
            let spec = kind.spec;
            Burst::start_with(objects, self.args.streams, move |ns, name| {
                let client = client.clone();
                let topic = topic_of.get(&ns).cloned().unwrap_or_default();
                async move {
                    let object: K =
                        manifest(&name, spec(&name, &topic)).map_err(|e| e.to_string())?;
                    create_object(&client, &ns, &object).await
                }
            })
        };
        let label = format!("{plural} burst");
        let outcome = self.wait_burst(&burst, &watch, operator, &label).await?;
        self.record_cpu(
            kind.cpu_key,
            kind.cpu_label,
            format!("{} {plural}", grouped(n as f64, 0)),
            &cpu,
        );
        let counters_after = operator.counters().await;
        drop(watch);
        say(format!(
            "{label}: {} of {} Ready in {:.1} s; last create returned after {}",
            grouped(outcome.ready as f64, 0),
            grouped(n as f64, 0),
            outcome.seconds,
            burst
                .creates_seconds()
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "(creates not all returned)".into())
        ));
        self.set(figures.burst_seconds, outcome.seconds_cell());
        self.set(figures.burst_rate, outcome.rate_cell());
        self.record_failures(&format!("{}CreateFailures", kind.key), &burst);
        if let Some((before, after)) = counters_before.zip(counters_after) {
            let work = after.since(&before);
            say(format!(
                "{label} work: {} {} reconciles, Kafka requests {}",
                grouped(work.reconciles_of(&kind_name), 0),
                kind_name,
                kafka_text(&work)
            ));
            self.detail(&format!("{}BurstWork", kind.key), work.to_json());
        }

        self.wait_idle(operator, &kind_name, &format!("after the {label}"))
            .await?;
        let rss = operator.memory_kib().map(|(rss, _)| rss);
        if let Some(rss) = rss {
            self.set(figures.rss_mib, Cell::number(mib(rss), 1));
            say(format!(
                "operator RSS with {} {plural} Ready: {:.1} MiB (before them: {})",
                grouped(n as f64, 0),
                mib(rss),
                rss_before
                    .map(|kib| format!("{:.1} MiB", mib(kib)))
                    .unwrap_or_else(|| "n/a".into())
            ));
        }
        if let Some((before, after)) = rss_before.zip(rss) {
            self.set(
                figures.rss_kib_per_object,
                Cell::number((after as f64 - before as f64) / n as f64, 2),
            );
        }

        let window = self
            .steady_window(operator, &format!("{} {plural}", grouped(n as f64, 0)))
            .await?;
        let per_refresh = |v: f64| v / window.refreshes;
        if let Some(api) = &window.api {
            self.set(
                figures.writes_per_refresh,
                Cell::number(per_refresh(api.writes), 1),
            );
            self.set(
                figures.reads_per_refresh,
                Cell::number(per_refresh(api.reads), 1),
            );
            self.detail(&format!("{}SteadyRequests", kind.key), json!(api.all));
        }
        if let Some(cpu) = window.cpu_seconds {
            self.set(
                figures.cpu_seconds_per_refresh,
                Cell::number(per_refresh(cpu), 2),
            );
        }
        if let Some(work) = &window.work {
            let reconciles = work.reconciles_of(&kind_name);
            self.set(
                figures.reconciles_per_refresh,
                Cell::number(per_refresh(reconciles), 0),
            );
            self.set(
                figures.kafka_requests_per_refresh,
                work.kafka_total()
                    .map(|v| Cell::number(per_refresh(v), 1))
                    .unwrap_or_else(|| Cell::text("n/a")),
            );
            say(format!(
                "steady window with {plural} ({:.0} s): API writes {}, reads {}; {} {} \
                 reconciles, Kafka requests {}",
                window.seconds,
                window
                    .api
                    .as_ref()
                    .map_or("n/a".into(), |a| grouped(a.writes, 0)),
                window
                    .api
                    .as_ref()
                    .map_or("n/a".into(), |a| grouped(a.reads, 0)),
                grouped(reconciles, 0),
                kind_name,
                kafka_text(work)
            ));
            self.detail(&format!("{}SteadyWork", kind.key), work.to_json());
        }
        self.detail(
            &format!("{}SteadyWindowSeconds", kind.key),
            json!(window.seconds),
        );

        // So that the next kind's figures are its own.
        let timeout = Duration::from_secs(self.args.ready_timeout);
        let mut clean_up = 0.0;
        for ns in &namespaces {
            clean_up += self
                .delete_namespace_with::<K>(plural, ns, timeout, "the next figures include them")
                .await;
        }
        self.detail(&format!("{}CleanUpSeconds", kind.key), json!(clean_up));
        Ok(())
    }

    /// 1 and 2: the N Topics at once, timed to all Ready, and the operator's work for them.
    async fn burst(&mut self, operator: &mut Operator, watch: &Watch) -> Result<(), Error> {
        let n = self.size;
        let before = operator.counters().await;
        let namespaces = self.burst_namespaces.clone();
        let topics = self.burst_topics("b", &namespaces, n);
        let cpu = CpuMark::take(&self.cpu_processes(Some(operator.pid())));
        let burst = Burst::start(self.client, topics, self.args.streams);
        let outcome = self.wait_burst(&burst, watch, operator, "burst").await?;
        self.record_cpu(
            "burst",
            "burst",
            format!("{} Topics", grouped(n as f64, 0)),
            &cpu,
        );
        let after = operator.counters().await;
        say(format!(
            "burst: {} of {} Ready in {:.1} s; last create returned after {}",
            grouped(outcome.ready as f64, 0),
            grouped(n as f64, 0),
            outcome.seconds,
            burst
                .creates_seconds()
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "(creates not all returned)".into())
        ));
        self.set("burstSeconds", outcome.seconds_cell());
        self.set("burstRate", outcome.rate_cell());
        if let Some(s) = burst.creates_seconds() {
            self.set("burstCreatesSeconds", Cell::number(s, 1));
        }
        self.record_failures("burstCreateFailures", &burst);
        if let (Some(before), Some(after)) = (&before, &after) {
            let work = after.since(before);
            let per_topic = |v: f64| v / n as f64;
            self.set(
                "reconcilesPerTopic",
                Cell::number(per_topic(work.topic_reconciles()), 2),
            );
            self.set(
                "createTopicsPerTopic",
                work.kafka_api("CreateTopics")
                    .map(|v| Cell::number(per_topic(v), 3))
                    .unwrap_or_else(|| Cell::text("n/a")),
            );
            self.set(
                "kafkaRequestsPerTopic",
                work.kafka_total()
                    .map(|v| Cell::number(per_topic(v), 2))
                    .unwrap_or_else(|| Cell::text("n/a")),
            );
            say(format!(
                "burst work: {} Topic reconciles, Kafka requests {}",
                grouped(work.topic_reconciles(), 0),
                kafka_text(&work)
            ));
            self.detail("burstWork", work.to_json());
        }
        Ok(())
    }

    /// 3: `--probes` Topics one at a time while the operator is idle; how many were created.
    async fn probes(&mut self, operator: &mut Operator, watch: &Watch) -> Result<usize, Error> {
        let mut samples = Vec::new();
        for k in 0..self.args.probes {
            let name = format!("q{}-{k:04}", self.index);
            self.kafka_topics.push(name.clone());
            let ns = self.probe_namespace.clone();
            let timeout = Duration::from_secs(self.args.probe_timeout);
            let seconds = self
                .probe(watch, operator, &ns, &name, timeout, None)
                .await?;
            samples.push(seconds.map(|s| s * 1000.0));
            // The next probe starts after the operator has had a moment to settle this one
            // (its status write wakes it again in the current operator).
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let text = |ms: Option<f64>| match ms {
            Some(ms) => Cell::number(ms, 0),
            None => Cell::text(format!(
                "> {} (not Ready)",
                grouped(self.args.probe_timeout as f64 * 1000.0, 0)
            )),
        };
        if !samples.is_empty() {
            let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
            self.set("probeSteadyP50Ms", text(p50));
            self.set("probeSteadyP99Ms", text(p99));
            say(format!(
                "probes while steady (ms): {}",
                samples
                    .iter()
                    .map(|s| s.map(|ms| format!("{ms:.0}")).unwrap_or_else(|| "-".into()))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        self.detail("probeSteadyMs", json!(samples));
        Ok(self.args.probes)
    }

    /// 4: a second burst, one Topic timed while it is pending, and the RSS with both Ready;
    /// `steady_topics` were Ready before it.
    /// Shrinks the second burst when the broker could not open its partitions' files: each
    /// partition holds open files, and a broker at its open-file limit fails requests with
    /// "Too many open files" (this VM's hard limit is 20 000, reached near 20 000 partitions).
    /// The files per Topic are estimated from the broker's files with `steady_topics` Topics.
    fn fit_pending_to_the_broker(&mut self, steady_topics: usize) {
        let Some(pid) = self
            .env
            .component_pids()
            .into_iter()
            .find_map(|(name, pid)| (name == "kafka").then_some(pid))
        else {
            return;
        };
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .ok();
        let limit = std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|soft| soft.parse::<usize>().ok())
            });
        let (Some(open), Some(limit)) = (open, limit) else {
            return;
        };
        // At least one file per Topic (its one partition's log), more as measured.
        let per_topic = (open as f64 / steady_topics.max(1) as f64).max(1.0);
        let room = (limit as f64 * 0.9 - open as f64).max(0.0);
        let fits = (room / per_topic) as usize;
        if fits < self.pending_size {
            self.notes.push(format!(
                "the second burst was {} Topics, not {}: the broker held {open} open files of its \
                 limit {limit} with {steady_topics} Topics ({per_topic:.2} per Topic), and more \
                 would fail its requests with \"Too many open files\"",
                fits, self.pending_size
            ));
            say(format!(
                "second burst reduced to {fits} Topics: the broker's open-file limit ({open} of {limit} open)"
            ));
            self.pending_size = fits.max(1);
        }
    }

    async fn pending(
        &mut self,
        operator: &mut Operator,
        watch: &Watch,
        steady_topics: usize,
    ) -> Result<(), Error> {
        self.fit_pending_to_the_broker(steady_topics);
        let before = operator.counters().await;
        let pending_namespaces = self.pending_namespaces.clone();
        let topics = self.burst_topics("p", &pending_namespaces, self.pending_size);
        let pending = Burst::start(self.client, topics, self.args.streams);
        let tenth = self.pending_size.div_ceil(10);
        while pending.returned() < tenth {
            operator.check_alive()?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        say(format!(
            "second burst: {} of {} creates returned; timing one Topic in {}",
            grouped(pending.returned() as f64, 0),
            grouped(self.pending_size as f64, 0),
            self.pending_probe_namespace
        ));
        let name = format!("r{}", self.index);
        self.kafka_topics.push(name.clone());
        let ns = self.pending_probe_namespace.clone();
        let timeout = Duration::from_secs(self.args.ready_timeout);
        let probe = self
            .probe(watch, operator, &ns, &name, timeout, Some(&pending))
            .await?;
        self.set(
            "probePendingSeconds",
            match probe {
                Some(s) => Cell::number(s, 2),
                None => Cell::text(format!("not Ready after {} s", self.args.ready_timeout)),
            },
        );
        say(format!(
            "one Topic while {} pending: {}",
            grouped(self.pending_size as f64, 0),
            probe
                .map(|s| format!("Ready in {s:.2} s"))
                .unwrap_or_else(|| "not Ready".into())
        ));
        let outcome = self
            .wait_burst(&pending, watch, operator, "second burst")
            .await?;
        self.set("pendingBurstRate", outcome.rate_cell());
        self.detail(
            "pendingBurst",
            json!({"ready": outcome.ready, "of": outcome.expected, "seconds": outcome.seconds, "complete": outcome.complete}),
        );
        self.record_failures("pendingCreateFailures", &pending);
        if let (Some(before), Some(after)) = (&before, &operator.counters().await) {
            self.detail("pendingWork", after.since(before).to_json());
        }
        self.wait_idle(operator, "Topic", "after the second burst")
            .await?;
        let both_kib = operator.memory_kib().map(|(rss, _)| rss).unwrap_or(0);
        self.set("rssBothMib", Cell::number(mib(both_kib), 1));
        say(format!(
            "operator RSS with {} Topics Ready: {:.1} MiB",
            grouped((steady_topics + self.pending_size + 1) as f64, 0),
            mib(both_kib)
        ));
        Ok(())
    }

    fn record_failures(&mut self, key: &str, burst: &Burst) {
        let failed = burst.failed();
        if let Some(first) = failed.first() {
            say(format!(
                "{} creates failed; the first: {first}",
                failed.len()
            ));
            self.notes.push(format!(
                "{} of {} creates failed ({key}); the first: {first}",
                failed.len(),
                burst.keys.len()
            ));
        }
        self.detail(key, json!({"count": failed.len(), "first": failed.first()}));
    }

    /// Waits until every Topic of `burst` is Ready, or `--ready-timeout` has passed since its
    /// first create, or its creates are over and every Topic not Ready failed to create.
    async fn wait_burst(
        &self,
        burst: &Burst,
        watch: &Watch,
        operator: &mut Operator,
        label: &str,
    ) -> Result<Outcome, Error> {
        let timeout = Duration::from_secs(self.args.ready_timeout);
        let expected = burst.keys.len();
        let mut last_progress = Instant::now();
        loop {
            operator.check_alive()?;
            let (ready, last) = watch.count(&burst.keys);
            let failed = burst.failed().len();
            if ready >= expected || (burst.creates_done() && ready + failed >= expected) {
                let complete = ready >= expected;
                let end = last.unwrap_or_else(Instant::now);
                return Ok(Outcome {
                    ready,
                    expected,
                    seconds: (end - burst.started).as_secs_f64(),
                    complete,
                });
            }
            let elapsed = burst.started.elapsed();
            if elapsed >= timeout {
                say(format!(
                    "{label}: giving up after {} s with {} of {} Ready",
                    elapsed.as_secs(),
                    grouped(ready as f64, 0),
                    grouped(expected as f64, 0)
                ));
                return Ok(Outcome {
                    ready,
                    expected,
                    seconds: elapsed.as_secs_f64(),
                    complete: false,
                });
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                say(format!(
                    "{label}: {} of {} Ready after {} s ({} creates returned)",
                    grouped(ready as f64, 0),
                    grouped(expected as f64, 0),
                    elapsed.as_secs(),
                    grouped(burst.returned() as f64, 0)
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates one Topic and returns the seconds from just before its create to its Ready seen
    /// by the watch, or `None` when it was not Ready within `timeout` (or could not be created).
    async fn probe(
        &self,
        watch: &Watch,
        operator: &mut Operator,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pending: Option<&Burst>,
    ) -> Result<Option<f64>, Error> {
        let k = key(namespace, name);
        let started = Instant::now();
        if let Err(e) = create_topic(self.client, namespace, name).await {
            say(format!("probe not measured: {e}"));
            return Ok(None);
        }
        let mut last_progress = Instant::now();
        loop {
            // Registered before the check, so a Ready recorded after it still wakes this wait.
            let notified = watch.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = watch.ready_at(&k) {
                return Ok(Some((at - started).as_secs_f64()));
            }
            operator.check_alive()?;
            if started.elapsed() >= timeout {
                say(format!(
                    "{k}: not Ready after {} s",
                    started.elapsed().as_secs()
                ));
                return Ok(None);
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let backlog = pending
                    .map(|b| {
                        format!(
                            "; second burst {} of {} Ready",
                            grouped(watch.count(&b.keys).0 as f64, 0),
                            grouped(b.keys.len() as f64, 0)
                        )
                    })
                    .unwrap_or_default();
                say(format!(
                    "{k}: not Ready yet after {} s{backlog}",
                    started.elapsed().as_secs()
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Waits until the operator has run no reconcile of `kind` (`Topic`, `ConsumerGroup`, ...)
    /// for 3 s, up to `--idle-timeout`; says (and records) when it never was.
    async fn wait_idle(
        &mut self,
        operator: &mut Operator,
        kind: &str,
        when: &str,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let timeout = Duration::from_secs(self.args.idle_timeout);
        let mut last: Option<f64> = None;
        let mut quiet = 0;
        let mut last_progress = Instant::now();
        while started.elapsed() < timeout {
            operator.check_alive()?;
            let now = operator.counters().await.map(|c| c.reconciles_of(kind));
            if now.is_some() && now == last {
                quiet += 1;
                if quiet >= 3 {
                    say(format!(
                        "operator idle {when} (after {:.0} s)",
                        started.elapsed().as_secs_f64()
                    ));
                    self.detail(
                        &format!("idle {when}"),
                        json!(started.elapsed().as_secs_f64()),
                    );
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            last = now;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                say(format!(
                    "waiting for the operator to be idle {when}: {} {kind} reconciles so far",
                    now.map(|n| grouped(n, 0)).unwrap_or_else(|| "?".into())
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        say(format!(
            "the operator was never idle for 3 s within {} s {when}; going on",
            timeout.as_secs()
        ));
        self.detail(&format!("idle {when}"), Value::Null);
        self.notes.push(format!(
            "the operator never went 3 s without a {kind} reconcile in the {} s it was given \
             {when} (what follows ran while it was busy)",
            timeout.as_secs()
        ));
        Ok(())
    }

    /// One refresh interval of quiet, then the `--steady-seconds` window, of which
    /// kube-apiserver's requests, the operator's CPU and its counters are taken. `what` says
    /// what is steady, for the progress lines.
    async fn steady_window(
        &self,
        operator: &mut Operator,
        what: &str,
    ) -> Result<SteadyWindow, Error> {
        let refresh = Duration::from_secs(self.args.refresh_seconds);
        say(format!(
            "steady state, {what}: waiting one refresh interval ({} s) before the {} s window",
            refresh.as_secs(),
            self.args.steady_seconds
        ));
        self.sleep_alive(operator, refresh, "settling").await?;
        let api_before = apiserver_requests(self.client).await;
        let cpu_before = operator.cpu_seconds();
        let counters_before = operator.counters().await;
        let window_started = Instant::now();
        self.sleep_alive(
            operator,
            Duration::from_secs(self.args.steady_seconds),
            "steady window",
        )
        .await?;
        let api_after = apiserver_requests(self.client).await;
        let cpu_after = operator.cpu_seconds();
        let counters_after = operator.counters().await;
        let seconds = window_started.elapsed().as_secs_f64();
        let api = match (api_before, api_after) {
            (Ok(before), Ok(after)) => Some(after.since(&before)),
            (Err(e), _) | (_, Err(e)) => {
                say(format!("kube-apiserver's /metrics: {e}"));
                None
            }
        };
        Ok(SteadyWindow {
            seconds,
            refreshes: seconds / refresh.as_secs_f64(),
            api,
            cpu_seconds: cpu_before
                .zip(cpu_after)
                .map(|(before, after)| after - before),
            work: counters_before
                .zip(counters_after)
                .map(|(before, after)| after.since(&before)),
        })
    }

    /// 6: the steady state with the Topics.
    async fn steady(&mut self, operator: &mut Operator) -> Result<(), Error> {
        let window = self.steady_window(operator, "Topics").await?;
        let per_minute = |v: f64| v * 60.0 / window.seconds;
        let per_refresh = |v: f64| v / window.refreshes;
        let writes = match &window.api {
            Some(api) => {
                self.set(
                    "apiWritesPerMinute",
                    Cell::number(per_minute(api.exactly), 1),
                );
                self.set(
                    "eventWritesPerMinute",
                    Cell::number(per_minute(api.events), 1),
                );
                self.detail("steadyWrites", json!(api.by_request));
                format!(
                    "{} exactly.dev writes, {} Event writes",
                    api.exactly, api.events
                )
            }
            None => "API writes n/a".to_string(),
        };
        if let Some(cpu) = window.cpu_seconds {
            self.set("cpuSecondsPerRefresh", Cell::number(per_refresh(cpu), 2));
        }
        if let Some(work) = &window.work {
            self.set(
                "reconcilesPerRefresh",
                Cell::number(per_refresh(work.topic_reconciles()), 0),
            );
            self.set(
                "kafkaRequestsPerRefresh",
                work.kafka_total()
                    .map(|v| Cell::number(per_refresh(v), 1))
                    .unwrap_or_else(|| Cell::text("n/a")),
            );
            say(format!(
                "steady window ({:.0} s): {writes}, {} Topic reconciles, Kafka requests {}",
                window.seconds,
                work.topic_reconciles(),
                kafka_text(work)
            ));
            self.detail("steadyWork", work.to_json());
        }
        self.detail("steadyWindowSeconds", json!(window.seconds));
        Ok(())
    }

    async fn sleep_alive(
        &self,
        operator: &mut Operator,
        duration: Duration,
        label: &str,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        while started.elapsed() < duration {
            operator.check_alive()?;
            if last_progress.elapsed() >= Duration::from_secs(15) {
                last_progress = Instant::now();
                say(format!(
                    "{label}: {} of {} s",
                    started.elapsed().as_secs(),
                    duration.as_secs()
                ));
            }
            let left = duration.saturating_sub(started.elapsed());
            tokio::time::sleep(left.min(Duration::from_millis(500))).await;
        }
        Ok(())
    }

    /// Removes this size's Topics, namespaces and Kafka topics, so the next size starts from
    /// an empty cluster and broker. The operator is stopped by then: nothing reconciles the
    /// deletions (the Topics have no finalizer with the default `deletionPolicy: Retain`).
    async fn clean_up(&self) {
        say("cleaning up: Topics, namespaces and Kafka topics of this size");
        for ns in self.namespaces() {
            let api: Api<Topic> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
            {
                say(format!("deleting the Topics of {ns}: {e}"));
            }
        }
        // The `others` phase deleted its namespaces already, unless they took too long.
        let mut all = self.namespaces();
        all.extend(self.other_namespaces.iter().cloned());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in &all {
            match namespaces.delete(ns, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => say(format!("deleting namespace {ns}: {e}")),
            }
        }
        if let Err(e) = delete_kafka_topics(&self.env.bootstrap_servers, &self.kafka_topics).await {
            say(format!("deleting the Kafka topics: {e}"));
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            let mut left = 0;
            for ns in &all {
                if matches!(namespaces.get_opt(ns).await, Ok(Some(_))) {
                    left += 1;
                }
            }
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        say("the namespaces were not gone after 120 s; going on");
    }
}

fn kafka_text(work: &Counters) -> String {
    match &work.kafka {
        None => "n/a (the operator exports no exactly_kafka_admin_requests_total)".into(),
        Some(by_api) if by_api.is_empty() => "none".into(),
        Some(by_api) => by_api
            .iter()
            .map(|(api, n)| format!("{api} {}", grouped(*n, 0)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

async fn delete_kafka_topics(bootstrap: &str, topics: &[String]) -> Result<(), Error> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let mut failed = 0;
    for chunk in topics.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for result in admin.delete_topics(&names, &options).await? {
            if result.is_err() {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        say(format!(
            "{failed} of {} Kafka topics were not deleted",
            topics.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conditions

fn conditions(env: &Environment, args: &Args, operator: &Path, load_before: &str) -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0));
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    let modified = std::fs::metadata(operator)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let mut flags = vec![
        "run".to_string(),
        "--metrics-addr".into(),
        "127.0.0.1:<free port>".into(),
    ];
    flags.extend(args.operator_args.iter().cloned());
    json!({
        "cores": cores,
        "memory": memory,
        "loadBefore": load_before,
        "loadAfter": loadavg(),
        "operator": operator,
        "operatorModifiedUnixSeconds": modified,
        "operatorFlags": flags,
        "operatorEnvironment": {"RUST_LOG": "warn"},
        // The checkout the driver ran in; `--operator` may have been built from another.
        "driverCheckout": {"commit": git(&["rev-parse", "--short", "HEAD"]), "dirty": dirty},
        "sizes": args.sizes,
        "pendingSize": args.pending_size,
        "streams": args.streams,
        "namespaces": args.namespaces,
        "probes": args.probes,
        "readyTimeoutSeconds": args.ready_timeout,
        "steadySeconds": args.steady_seconds,
        "refreshSeconds": args.refresh_seconds,
        "phases": args.phases.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "kafkaAlone": !args.no_ceiling,
        "apiAlone": !args.no_api_alone,
        "kafkaVersion": env.kafka_version,
        "topicSpec": {"partitions": 1, "replicationFactor": 1},
        // The `others` phase's objects, with placeholders for the name and the Topic named.
        "consumerGroupSpec": group_spec("<name>", "<topic>"),
        "producerSpec": producer_spec("<name>", "<topic>"),
        "heartbeatsNotCounted": HEARTBEATS,
    })
}

/// Creates the namespace `ns`, labelled as the benchmark's.
async fn create_bench_namespace(client: &Client, ns: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {BENCH_LABEL: BENCH_LABEL_VALUE}},
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| format!("creating namespace {ns}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_unfinished_samples_sort_last() {
        let v: Vec<Option<f64>> = (1..=100).map(|x| Some(x as f64)).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        // With 20 samples, p99 is the largest.
        let twenty: Vec<Option<f64>> = (1..=20).rev().map(|x| Some(x as f64)).collect();
        assert_eq!(percentile(&twenty, 0.99), Some(20.0));
        assert_eq!(percentile(&twenty, 0.5), Some(10.0));
        let mut with_timeout = twenty.clone();
        // The fastest sample (1) never finished: it sorts last, and the median moves up.
        with_timeout[19] = None;
        assert_eq!(percentile(&with_timeout, 0.99), None);
        assert_eq!(percentile(&with_timeout, 0.5), Some(11.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn sample_lines_are_parsed() {
        let s = parse_sample(r#"exactly_reconciles_total{kind="Topic",result="ok"} 3197"#);
        assert_eq!(
            s,
            Some(Sample {
                name: "exactly_reconciles_total".into(),
                labels: [("kind", "Topic"), ("result", "ok")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: 3197.0,
            })
        );
        let s = parse_sample(r#"x{a="q\"u,o}te",b="\\"} 1.5e3 1700000000"#);
        let s = s.as_ref();
        assert_eq!(s.map(|s| s.label("a")), Some("q\"u,o}te"));
        assert_eq!(s.map(|s| s.label("b")), Some("\\"));
        assert_eq!(s.map(|s| s.value), Some(1500.0));
        assert_eq!(parse_sample("up 1").map(|s| s.value), Some(1.0));
        assert_eq!(parse_sample("# TYPE up gauge"), None);
        assert_eq!(parse_sample("# EOF"), None);
        assert_eq!(parse_sample(""), None);
        assert_eq!(parse_sample(r#"x{a="unterminated} 1"#), None);
    }

    #[test]
    fn operator_counters_sum_topic_reconciles_and_kafka_requests_by_api() {
        let text = "\
# HELP exactly_reconciles Reconciles by kind and result.
# TYPE exactly_reconciles counter
exactly_reconciles_total{kind=\"Topic\",result=\"ok\"} 3000
exactly_reconciles_total{kind=\"Topic\",result=\"KafkaUnreachable\"} 197
exactly_reconciles_total{kind=\"KafkaCluster\",result=\"ok\"} 12
# TYPE exactly_kafka_admin_requests counter
exactly_kafka_admin_requests_total{api=\"CreateTopics\"} 1000
exactly_kafka_admin_requests_total{api=\"Metadata\"} 50
# EOF
";
        let c = Counters::from_exposition(text);
        assert_eq!(c.topic_reconciles(), 3197.0);
        assert_eq!(c.kafka_api("CreateTopics"), Some(1000.0));
        assert_eq!(c.kafka_total(), Some(1050.0));
        let earlier = Counters::from_exposition(
            "exactly_reconciles_total{kind=\"Topic\",result=\"ok\"} 100\n\
             exactly_kafka_admin_requests_total{api=\"Metadata\"} 40\n",
        );
        let d = c.since(&earlier);
        assert_eq!(d.topic_reconciles(), 3097.0);
        assert_eq!(d.kafka_api("CreateTopics"), Some(1000.0));
        assert_eq!(d.kafka_api("Metadata"), Some(10.0));
        assert_eq!(d.kafka_api("DescribeConfigs"), Some(0.0));

        // Declared but not counted yet: zero, not n/a.
        let declared = Counters::from_exposition("# TYPE exactly_kafka_admin_requests counter\n");
        assert_eq!(declared.kafka_total(), Some(0.0));
        // Not exported at all: n/a.
        let absent = Counters::from_exposition("exactly_reconciles_total{kind=\"Topic\"} 1\n");
        assert_eq!(absent.kafka_total(), None);
        assert_eq!(absent.since(&absent).kafka_api("CreateTopics"), None);
    }

    #[test]
    fn operator_reconciles_are_counted_by_kind() {
        let text = "\
exactly_reconciles_total{kind=\"Topic\",result=\"ok\"} 10
exactly_reconciles_total{kind=\"ConsumerGroup\",result=\"ok\"} 200
exactly_reconciles_total{kind=\"ConsumerGroup\",result=\"KafkaUnreachable\"} 3
exactly_reconciles_total{kind=\"Producer\",result=\"ok\"} 50
";
        let c = Counters::from_exposition(text);
        assert_eq!(c.reconciles_of("ConsumerGroup"), 203.0);
        assert_eq!(c.reconciles_of("Producer"), 50.0);
        assert_eq!(c.topic_reconciles(), 10.0);
        assert_eq!(c.reconciles_of("Pipeline"), 0.0);
        let earlier = Counters::from_exposition(
            "exactly_reconciles_total{kind=\"ConsumerGroup\",result=\"ok\"} 3\n\
             exactly_reconciles_total{kind=\"Topic\",result=\"ok\"} 10\n",
        );
        let d = c.since(&earlier);
        assert_eq!(d.reconciles_of("ConsumerGroup"), 200.0);
        assert_eq!(d.reconciles_of("Producer"), 50.0);
        assert_eq!(d.topic_reconciles(), 0.0);
        assert_eq!(d.to_json()["reconciles"]["Producer"], json!(50.0));
    }

    #[test]
    fn apiserver_writes_count_exactly_and_event_writes_only() {
        let text = r#"
apiserver_request_total{code="200",component="apiserver",dry_run="",group="exactly.dev",resource="topics",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="exactly.dev",resource="topics",scope="resource",subresource="",verb="POST",version="v1alpha1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="exactly.dev",resource="topics",scope="cluster",subresource="",verb="WATCH",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="exactly.dev",resource="topics",scope="cluster",subresource="",verb="LIST",version="v1alpha1"} 5
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="PATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 90
"#;
        let w = ApiRequests::from_exposition(text);
        assert_eq!(w.exactly, 1007.0);
        assert_eq!(w.events, 6.0);
        assert_eq!(
            w.by_request.get("PATCH exactly.dev/topics/status"),
            Some(&7.0)
        );
        assert_eq!(w.by_request.get("PATCH core/events"), Some(&2.0));
        assert_eq!(w.by_request.len(), 4);
        let d = w.since(&ApiRequests::from_exposition(
            r#"apiserver_request_total{group="exactly.dev",resource="topics",subresource="",verb="POST"} 1000"#,
        ));
        assert_eq!(d.exactly, 7.0);
        assert!(!d.by_request.contains_key("POST exactly.dev/topics"));
    }

    #[test]
    fn apiserver_reads_and_writes_count_every_resource_but_heartbeats_and_urls() {
        let text = r#"
apiserver_request_total{code="200",group="",resource="secrets",subresource="",verb="GET",version="v1"} 200
apiserver_request_total{code="404",group="",resource="secrets",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="200",group="",resource="secrets",subresource="",verb="APPLY",version="v1"} 5
apiserver_request_total{code="200",group="exactly.dev",resource="producers",subresource="status",verb="APPLY",version="v1alpha1"} 2
apiserver_request_total{code="200",group="exactly.dev",resource="kafkaclusters",subresource="",verb="LIST",version="v1alpha1"} 4
apiserver_request_total{code="200",group="exactly.dev",resource="producers",subresource="",verb="WATCH",version="v1alpha1"} 9
apiserver_request_total{code="201",group="",resource="events",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="PUT",version="v1"} 90
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="GET",version="v1"} 90
apiserver_request_total{code="200",group="",resource="nodes",subresource="status",verb="PATCH",version="v1"} 30
apiserver_request_total{code="200",group="",resource="",subresource="",verb="GET",version=""} 17
"#;
        let r = ApiRequests::from_exposition(text);
        // Secrets, the Producer's status and the Event; not the leases, nodes, or the WATCH.
        assert_eq!(r.writes, 8.0);
        // The Secret GETs (found or not) and the LIST; not the lease GETs or `/metrics`.
        assert_eq!(r.reads, 207.0);
        assert_eq!(r.exactly, 2.0);
        assert_eq!(r.events, 1.0);
        assert_eq!(r.all.get("GET core/secrets"), Some(&203.0));
        assert_eq!(r.all.get("PUT coordination.k8s.io/leases"), Some(&90.0));
        assert_eq!(r.all.get("PATCH core/nodes/status"), Some(&30.0));
        assert!(!r.all.keys().any(|k| k.starts_with("WATCH")));
        assert!(!r.all.contains_key("GET core/"));
        let earlier = ApiRequests::from_exposition(
            r#"apiserver_request_total{group="",resource="secrets",subresource="",verb="GET"} 3
apiserver_request_total{group="coordination.k8s.io",resource="leases",subresource="",verb="PUT"} 80"#,
        );
        let d = r.since(&earlier);
        assert_eq!(d.reads, 204.0);
        assert_eq!(d.writes, 8.0);
        assert_eq!(d.all.get("GET core/secrets"), Some(&200.0));
        assert_eq!(d.all.get("PUT coordination.k8s.io/leases"), Some(&10.0));
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(10_000.0, 0), "10 000");
        assert_eq!(grouped(1000.0, 0), "1 000");
        assert_eq!(grouped(999.0, 0), "999");
        assert_eq!(grouped(1234567.891, 2), "1 234 567.89");
        assert_eq!(grouped(75.64, 1), "75.6");
        assert_eq!(grouped(-1234.5, 1), "-1 234.5");
        assert_eq!(grouped(-0.01, 1), "0.0");
        assert_eq!(grouped(0.0, 0), "0");
    }

    #[test]
    fn growth_is_one_for_linear_figures_of_every_kind() {
        // Seconds 10x for 10x the Topics: linear.
        assert_eq!(growth(Growth::Total, 6.0, 60.0, 10.0), Some(1.0));
        // Constant per-Topic cost: linear total.
        assert_eq!(growth(Growth::PerTopic, 3.2, 3.2, 10.0), Some(1.0));
        // Constant rate: linear time.
        assert_eq!(growth(Growth::Rate, 170.0, 170.0, 10.0), Some(1.0));
        // The issue's figures: 1 000 in 75.6 s, 10 000 far slower: worse than linear.
        let g = growth(Growth::Rate, 13.2, 2.7, 10.0);
        assert!(g.is_some_and(|g| g > 4.0));
        // A constant latency does not grow: 1 / size ratio.
        assert_eq!(growth(Growth::Total, 100.0, 100.0, 10.0), Some(0.1));
        assert_eq!(growth(Growth::Total, 0.0, 5.0, 10.0), None);
        assert_eq!(growth(Growth::None, 1.0, 2.0, 10.0), None);
    }

    fn report(size: usize, cells: &[(&'static str, Cell)]) -> SizeReport {
        SizeReport {
            size,
            pending_size: size,
            clusters: 4,
            cells: cells.iter().cloned().collect(),
            notes: Vec::new(),
            details: serde_json::Map::new(),
            cpu: Vec::new(),
        }
    }

    #[test]
    fn the_table_has_a_column_per_size_the_goal_and_the_growth() {
        let rows = &ROWS[..3];
        let sizes = vec![
            report(
                1000,
                &[
                    ("burstSeconds", Cell::number(75.6, 1)),
                    ("burstRate", Cell::number(13.2, 1)),
                ],
            ),
            report(
                10_000,
                &[
                    (
                        "burstSeconds",
                        Cell::text("not reached: 1 760 of 10 000 Ready after 600 s"),
                    ),
                    ("burstCreatesSeconds", Cell::number(40.0, 1)),
                    ("burstRate", Cell::number(2.9, 1)),
                ],
            ),
        ];
        let table = render_table(rows, &sizes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| Figure | N = 1 000 | N = 10 000 | Goal | Growth |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| Burst: N Topics created at once → all Ready (s) | 75.6 | not reached: 1 760 of \
             10 000 Ready after 600 s | ≤ 6 at 1 000, ≤ 60 at 10 000 | - |"
        );
        assert_eq!(
            lines[3],
            "| Burst: last create returned (s) | n/a | 40.0 |  | - |"
        );
        assert_eq!(
            lines[4],
            "| Burst rate (Topics Ready/s) | 13.2 | 2.9 | ≥ 170 | 4.55 |"
        );
        assert!(lines[6].starts_with("Growth: "), "{table}");
        assert!(lines[6].contains("0.10 = does not grow"), "{table}");

        let mut noted = report(1000, &[]);
        noted.notes.push("the operator never went idle".into());
        let with_notes = render_table(rows, &[noted]);
        assert!(
            with_notes.ends_with("\n\nNotes:\n- N = 1 000: the operator never went idle"),
            "{with_notes}"
        );

        // One size: no growth column.
        let one = render_table(rows, &sizes[..1]);
        assert!(
            one.starts_with("| Figure | N = 1 000 | Goal |\n|---|---|---|\n"),
            "{one}"
        );
        assert!(!one.contains("Growth"));
    }

    #[test]
    fn phases_default_to_all_and_can_be_chosen() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(std::iter::once("bench").chain(extra.iter().copied()))
        };
        let all = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            all.phases,
            vec![
                Phase::Burst,
                Phase::Probes,
                Phase::Pending,
                Phase::Steady,
                Phase::Others
            ]
        );
        assert_eq!(all.phases, Phase::value_variants());
        assert!(!all.no_ceiling);
        assert!(!all.no_api_alone);
        let some = parse(&["--phases", "burst,steady", "--no-ceiling", "--no-api-alone"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(some.phases, vec![Phase::Burst, Phase::Steady]);
        assert!(some.no_ceiling);
        assert!(some.no_api_alone);
        assert!(parse(&["--phases", "burst,warmup"]).is_err());
        let others = parse(&["--phases", "burst,others"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(others.phases, vec![Phase::Burst, Phase::Others]);
    }

    #[test]
    fn skipped_figures_are_rows_and_the_ceilings_follow_the_burst() {
        let keys: Vec<&str> = ROWS.iter().map(|r| r.key).collect();
        for phase in Phase::value_variants() {
            for key in phase.figures() {
                assert!(
                    keys.contains(key),
                    "{} figure {key} is no row",
                    phase.name()
                );
            }
        }
        let burst_rate = keys.iter().position(|k| *k == "burstRate");
        let mut expected = KAFKA_ALONE_FIGURES.to_vec();
        expected.push(RATIO_FIGURE);
        expected.extend(API_ALONE_FIGURES);
        expected.push(API_RATIO_FIGURE);
        let after: Vec<&str> = burst_rate
            .map(|i| keys[i + 1..i + 1 + expected.len()].to_vec())
            .unwrap_or_default();
        assert_eq!(after, expected);
        // Every figure is measured by exactly one phase, a ceiling, or always.
        let mut owned: Vec<&str> = Phase::value_variants()
            .iter()
            .flat_map(|p| p.figures().iter().copied())
            .chain(expected.iter().copied())
            .collect();
        owned.sort_unstable();
        let before = owned.len();
        owned.dedup();
        assert_eq!(owned.len(), before);
    }

    #[test]
    fn the_other_kinds_figures_are_the_others_phase_and_rows_of_their_kind() {
        let mut both = GROUPS.figures.all().to_vec();
        both.extend(PRODUCERS.figures.all());
        assert_eq!(Phase::Others.figures(), both.as_slice());
        for (kind, prefix) in [(&GROUPS, "groups"), (&PRODUCERS, "producers")] {
            for key in kind.figures.all() {
                assert!(key.starts_with(prefix), "{key}");
                let row = ROWS.iter().find(|r| r.key == key);
                assert!(
                    row.is_some_and(|r| r.label.contains(kind.plural)),
                    "{key}: no row naming {}",
                    kind.plural
                );
            }
            assert!(kind.cpu_key.starts_with(prefix));
        }
        let goal = |key: &str| ROWS.iter().find(|r| r.key == key).map(|r| r.goal);
        assert_eq!(goal(GROUPS.figures.writes_per_refresh), Some("0"));
        assert_eq!(goal(PRODUCERS.figures.writes_per_refresh), Some("0"));
    }

    #[test]
    fn the_other_kinds_manifests_are_valid_and_ready_reads_their_status() {
        let group: ConsumerGroup = manifest("cg0-0-000001", group_spec("cg0-0-000001", "t"))
            .unwrap_or_else(|e| panic!("group: {e}"));
        assert_eq!(group.spec.group_id, None);
        assert_eq!(group.spec.topics[0].name, "t");
        assert_eq!(
            group.labels().get(BENCH_LABEL).map(String::as_str),
            Some("scale")
        );
        let producer: Producer = manifest("pr0-0-000001", producer_spec("pr0-0-000001", "t"))
            .unwrap_or_else(|e| panic!("producer: {e}"));
        assert_eq!(producer.spec.transactional_id_prefix, "pr0-0-000001");
        assert_eq!(producer.spec.cluster_ref.name, CLUSTER);

        let ready = json!({"observedGeneration": 1, "conditions": [{"type": "Ready",
            "status": "True", "observedGeneration": 1, "reason": "GroupObserved",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let with = |mut object: Value, generation: i64, status: &Value| {
            object["metadata"]["generation"] = json!(generation);
            object["status"] = status.clone();
            object
        };
        let group_json = serde_json::to_value(&group).unwrap_or_else(|e| panic!("{e}"));
        let observed: ConsumerGroup = serde_json::from_value(with(group_json.clone(), 1, &ready))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(is_ready(&observed));
        let changed: ConsumerGroup =
            serde_json::from_value(with(group_json, 2, &ready)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_ready(&changed));
        assert!(!is_ready(&group));
        let producer_json = serde_json::to_value(&producer).unwrap_or_else(|e| panic!("{e}"));
        let observed: Producer = serde_json::from_value(with(producer_json, 1, &ready))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(is_ready(&observed));
    }

    #[test]
    fn the_ratio_is_the_burst_rate_over_kafka_alone() {
        let ratio = ratio_cell(Some(&Cell::number(95.4, 1)), Some(&Cell::number(190.8, 1)));
        assert_eq!(ratio, Cell::number(0.5, 2));
        assert_eq!(ratio.text, "0.50");
        let skipped = Cell::text(SKIPPED);
        assert_eq!(
            ratio_cell(Some(&Cell::number(95.4, 1)), Some(&skipped)),
            skipped
        );
        assert_eq!(
            ratio_cell(Some(&skipped), Some(&Cell::number(190.8, 1))),
            skipped
        );
        let not_all = ratio_cell(
            Some(&Cell::text("< 12.0 (not all Ready)")),
            Some(&Cell::number(190.8, 1)),
        );
        assert_eq!(not_all.value, None);
        assert!(not_all.text.starts_with("n/a"), "{}", not_all.text);
        assert_eq!(ratio_cell(None, None).value, None);
    }

    #[test]
    fn kafka_alone_figures_are_numbers_only_when_all_were_created() {
        let alone = |described: usize, failed: usize| KafkaAlone {
            expected: 1000,
            described,
            seconds: 4.0,
            creates_seconds: 3.5,
            chunks: 2,
            requests: 2,
            failed: (0..failed)
                .map(|i| (format!("bench-ceiling-1000-{i:06}"), "refused".to_string()))
                .collect(),
        };
        let all = alone(1000, 0);
        assert_eq!(all.seconds_cell(), Cell::number(4.0, 1));
        assert_eq!(all.rate_cell(), Cell::number(250.0, 1));
        let some = alone(990, 10);
        assert_eq!(some.seconds_cell().value, None);
        assert_eq!(
            some.seconds_cell().text,
            "not reached: 990 of 1 000 in Metadata after 4 s (10 creates failed)"
        );
        assert_eq!(some.rate_cell().value, None);
        assert_eq!(some.to_json()["failed"]["count"], json!(10));
    }

    #[test]
    fn api_alone_figures_are_numbers_only_when_all_were_written() {
        let writes = |expected: usize, written: usize, failed: usize, seconds: f64| Writes {
            expected,
            written: (0..written)
                .map(|k| ("bench-api-alone-0".to_string(), format!("a0-{k:06}")))
                .collect(),
            failed: (0..failed).map(|k| format!("refused {k}")).collect(),
            seconds,
        };
        let all = ApiAlone {
            creates: writes(1000, 1000, 0, 4.0),
            statuses: writes(1000, 1000, 0, 6.0),
        };
        assert_eq!(all.creates_seconds_cell(), Cell::number(4.0, 1));
        assert_eq!(all.creates_rate_cell(), Cell::number(250.0, 1));
        assert_eq!(all.seconds_cell(), Cell::number(10.0, 1));
        assert_eq!(all.rate_cell(), Cell::number(100.0, 1));
        // The operator's burst at 50 Topics/s is half the API server's ceiling.
        assert_eq!(
            ratio_cell(Some(&Cell::number(50.0, 1)), Some(&all.rate_cell())),
            Cell::number(0.5, 2)
        );
        let some = ApiAlone {
            creates: writes(1000, 990, 10, 4.0),
            statuses: writes(990, 990, 0, 6.0),
        };
        assert_eq!(some.creates_seconds_cell().value, None);
        assert_eq!(
            some.creates_seconds_cell().text,
            "not reached: 990 of 1 000 created after 4 s (10 failed)"
        );
        assert_eq!(some.seconds_cell().value, None);
        assert_eq!(some.rate_cell().text, "< 99.0 (not all written)");
        assert_eq!(some.to_json()["creates"]["failed"]["count"], json!(10));
    }

    #[test]
    fn the_status_written_by_api_alone_makes_a_new_topic_ready() {
        let patch = ready_status_patch("a0-000001");
        let topic: Topic = serde_json::from_value(json!({
            "apiVersion": "exactly.dev/v1alpha1",
            "kind": "Topic",
            "metadata": {"name": "a0-000001", "namespace": "ns", "generation": 1},
            "spec": {"clusterRef": {"name": "local"}, "partitions": 1},
            "status": patch["status"],
        }))
        .unwrap_or_else(|e| panic!("topic: {e}"));
        assert!(is_ready(&topic));
        assert_eq!(patch["status"]["observedGeneration"], json!(1));
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(ready["reason"], json!("TopicReady"));
        assert_eq!(ready["observedGeneration"], json!(1));
        assert!(ready["lastTransitionTime"].is_string(), "{ready}");
    }

    #[test]
    fn cpu_by_process_is_the_difference_the_most_first() {
        let stat = "cpu  100 10 50 800 20 5 5 10 0 0\ncpu0 50 5 25 400 10 2 3 5 0 0\n";
        assert_eq!(
            machine_cpu_from_stat(stat, 100.0),
            Some(MachineCpu {
                busy: 1.8,
                total: 10.0,
                steal: 0.1
            })
        );
        assert_eq!(machine_cpu_from_stat("cpu  1 2 3\n", 100.0), None);
        let mark =
            |at: Instant, apiserver: f64, bench: Option<f64>, (busy, total, steal)| CpuMark {
                at,
                processes: vec![
                    ("kube-apiserver".into(), 10, Some(apiserver)),
                    ("etcd".into(), 11, Some(1.0)),
                    ("kafka-storage-format".into(), 12, None),
                    ("bench".into(), 13, bench),
                ],
                machine: Some(MachineCpu { busy, total, steal }),
            };
        let start = Instant::now();
        let before = mark(start, 2.0, Some(0.5), (100.0, 200.0, 3.0));
        let after = mark(
            start + Duration::from_millis(5200),
            6.5,
            Some(1.5),
            (106.0, 210.4, 3.25),
        );
        let used = CpuUse::between("burst", "burst", "300 Topics".into(), &before, &after);
        assert_eq!(
            used.processes,
            vec![
                ("kube-apiserver".to_string(), 4.5),
                ("bench".to_string(), 1.0),
                ("etcd".to_string(), 0.0),
            ]
        );
        assert_eq!(
            used.text(),
            "burst (300 Topics, 5.2 s wall): kube-apiserver 4.5 s, bench 1.0 s, the other 1 \
             under 0.05 s; machine 6.0 s busy of 10.4 s, 0.5 s of it outside these processes (0.2 s \
             stolen by the hypervisor)"
        );
        assert_eq!(used.to_json()["cpuSeconds"]["kube-apiserver"], json!(4.5));
        assert_eq!(used.to_json()["machine"]["busySeconds"], json!(6.0));

        let mut report = report(300, &[]);
        report.cpu.push(used);
        let table = render_table(&ROWS[..1], &[report]);
        assert!(
            table.contains("\n- N = 300, burst (300 Topics, 5.2 s wall): kube-apiserver"),
            "{table}"
        );
    }

    #[test]
    fn the_broker_is_settled_when_no_partition_is_being_deleted() {
        let entries = [
            "__cluster_metadata-0",
            "meta.properties",
            "b0-0-000001-0",
            "bench-ceiling-1000-000001-0",
            "bench-ceiling-10000-000001-0",
            "b0-0-000002-0.9f1c2a7d0e3b4c5d8e6f7a8b9c0d1e2f-delete",
        ];
        assert_eq!(unsettled(entries, None), 1);
        assert_eq!(unsettled(entries, Some("bench-ceiling-1000-")), 2);
        assert_eq!(unsettled(entries, Some("bench-ceiling-10000-")), 2);
        assert_eq!(unsettled(entries[..3].iter().copied(), None), 0);
    }

    #[test]
    fn ready_means_ready_for_the_current_generation() {
        let topic = |generation: i64, status: Value| -> Topic {
            serde_json::from_value(json!({
                "apiVersion": "exactly.dev/v1alpha1",
                "kind": "Topic",
                "metadata": {"name": "t", "namespace": "ns", "generation": generation},
                "spec": {"clusterRef": {"name": "local"}, "partitions": 1},
                "status": status,
            }))
            .unwrap_or_else(|e| panic!("topic: {e}"))
        };
        let condition = |status: &str, observed: i64| {
            json!({"type": "Ready", "status": status, "observedGeneration": observed,
                   "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "R", "message": ""})
        };
        assert!(is_ready(&topic(
            1,
            json!({"conditions": [condition("True", 1)]})
        )));
        assert!(!is_ready(&topic(
            2,
            json!({"conditions": [condition("True", 1)]})
        )));
        assert!(!is_ready(&topic(
            1,
            json!({"conditions": [condition("False", 1)]})
        )));
        assert!(!is_ready(&topic(1, json!({}))));
        let without_observed = json!({"type": "Ready", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "R", "message": ""});
        assert!(is_ready(&topic(
            3,
            json!({"observedGeneration": 3, "conditions": [without_observed]})
        )));
        assert!(topic_manifest("b0-0-000001").is_ok());
    }
}
