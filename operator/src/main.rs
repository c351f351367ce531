//! The `exactly` binary: runs the controllers, or prints the CRDs.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc malloc: it returns memory freed after a refresh or a burst to the
/// system (with glibc, 10 000 Topics kept RSS at 158-168 MiB between refreshes, 111 MiB right
/// after a `malloc_trim`; with jemalloc 61-75 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "exactly",
    version,
    about = "Kubernetes operator for exactly-once pipelines on Apache Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or the in-cluster service account).
    Run {
        /// Watch only these namespaces, comma-separated (default: all namespaces).
        #[arg(long, env = "EXACTLY_NAMESPACE")]
        namespace: Option<String>,
        /// Reconciles of one kind that may run at once (Topics: --topic-concurrency).
        #[arg(long, env = "EXACTLY_CONCURRENCY", default_value_t = 4)]
        concurrency: u16,
        /// Topic reconciles that may run at once. They mostly wait for a batched Kafka request
        /// shared with the Topics reconciled beside them: more at once means fewer requests.
        #[arg(long, env = "EXACTLY_TOPIC_CONCURRENCY", default_value_t = exactly::controller::DEFAULT_TOPIC_CONCURRENCY)]
        topic_concurrency: u16,
        /// Log format.
        #[arg(long, env = "EXACTLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// How often delivery figures (lag, transactions) are refreshed, e.g. `30s`, `2m`. One
        /// observation of a cluster per interval serves every resource on it.
        #[arg(long, env = "EXACTLY_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_interval)]
        refresh_interval: std::time::Duration,
        /// Address of the /metrics, /healthz and /readyz endpoint; `off` disables it.
        #[arg(long, env = "EXACTLY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: String,
        /// Take part in leader election on a Lease: only the leader reconciles and writes, so
        /// several replicas may run. Needs --lease-namespace (or POD_NAMESPACE).
        #[arg(long, env = "EXACTLY_LEADER_ELECT")]
        leader_elect: bool,
        /// Name of the leader-election Lease.
        #[arg(long, env = "EXACTLY_LEASE_NAME", default_value = "exactly-operator")]
        lease_name: String,
        /// Namespace of the leader-election Lease (usually the operator's own).
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// The image Pipeline workers run unless a Pipeline sets spec.image (the operator's
        /// image ships the exactly-worker binary).
        #[arg(long, env = "EXACTLY_WORKER_IMAGE", default_value = exactly::controller::DEFAULT_WORKER_IMAGE)]
        worker_image: String,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crds {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    exactly::api::duration::parse(text)
        .map_err(|e| format!("'{text}' is not a duration: {e} (e.g. 30s, 2m, 1m30s)"))
        .and_then(|d| {
            if d >= std::time::Duration::from_secs(1) {
                Ok(d)
            } else {
                Err(format!("'{text}' is shorter than 1s"))
            }
        })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pod's log gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn write_crds(out_dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    for crd in exactly::crdgen::all() {
        let yaml = exactly::crdgen::render(&crd)?;
        match &out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(exactly::crdgen::file_name(&crd));
                std::fs::write(&path, yaml)?;
                eprintln!("wrote {}", path.display());
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors reach the user as sentences, not as Debug dumps.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Crds { out_dir } => write_crds(out_dir),
        Command::Run {
            namespace,
            concurrency,
            topic_concurrency,
            log_format,
            refresh_interval,
            metrics_addr,
            leader_elect,
            lease_name,
            lease_namespace,
            worker_image,
        } => {
            init_logging(log_format);
            let metrics = std::sync::Arc::new(exactly::metrics::Metrics::default());
            if metrics_addr != "off" {
                let address = metrics_addr
                    .parse()
                    .map_err(|e| format!("--metrics-addr '{metrics_addr}': {e}"))?;
                exactly::http::serve(address, metrics.clone()).await?;
            }
            let config = kube::Config::infer().await?;
            let client = kube::Client::try_from(config.clone())?;
            let mut options = exactly::controller::Options {
                namespace,
                concurrency,
                topic_concurrency,
                refresh_interval,
                metrics,
                worker_image,
                fence: exactly::fence::Fence::open(),
            };
            let signal = futures::future::FutureExt::shared(Box::pin(shutdown_signal()));
            if !leader_elect {
                exactly::controller::run(client, options, signal).await;
                return Ok(());
            }
            let lease_namespace = lease_namespace
                .ok_or("--leader-elect needs --lease-namespace (or the POD_NAMESPACE variable)")?;
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("exactly-{}", std::process::id()));
            let election = exactly::lease::Election::new(&lease_namespace, &lease_name, &identity);
            let leader = tokio::select! {
                leader = election.acquire(client.clone()) => std::sync::Arc::new(leader),
                _ = signal.clone() => return Ok(()),
            };
            // Every change, to the API server or to Kafka, passes the leader's fence: a replica
            // that stalled past its lease changes nothing when it wakes, even before it notices
            // the lease is gone. The election itself keeps the unfenced client.
            options.fence = leader.fence();
            let fenced = kube::client::ClientBuilder::try_from(config)?
                .with_layer(&exactly::fence::client_layer(leader.fence()))
                .build();
            // Reconcile until a signal, or until the lease is lost (then exit non-zero, so the
            // pod restarts and waits its turn: two leaders must never write at once).
            let stop = std::sync::Arc::new(tokio::sync::Notify::new());
            let lost = {
                let (leader, stop, signal) = (leader.clone(), stop.clone(), signal.clone());
                tokio::spawn(async move {
                    let lost = tokio::select! {
                        _ = leader.lost() => true,
                        _ = signal => false,
                    };
                    stop.notify_one();
                    lost
                })
            };
            exactly::controller::run(fenced, options, async move { stop.notified().await }).await;
            if lost.await.unwrap_or(true) {
                return Err("lost the leader-election lease; exiting".into());
            }
            if let Ok(leader) = std::sync::Arc::try_unwrap(leader) {
                leader.release().await;
            }
            Ok(())
        }
    }
}
