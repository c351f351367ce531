//! `exactly-worker`: runs one member of a Pipeline. See the library documentation for what it
//! does and `exactly_worker::decide` for the exit codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, ValueEnum};
use tracing::{error, info};

use exactly_worker::WorkerConfig;
use exactly_worker::decide::ExitReason;
use exactly_worker::http::{self, Health};
use exactly_worker::metrics::Metrics;
use exactly_worker::run::{self, Runtime};

/// Runs one exactly-once Pipeline worker.
#[derive(Debug, Parser)]
#[command(name = "exactly-worker", version)]
struct Args {
    /// Path of the pipeline.json the operator renders.
    #[arg(long, env = "EXACTLY_PIPELINE_CONFIG")]
    config: String,
    /// This worker's ordinal (the transactional.id suffix). Default: the trailing `-N` of
    /// $POD_NAME or of the host name, as StatefulSet pods are named.
    #[arg(long)]
    ordinal: Option<u32>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9464")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() {
    let args = Args::parse();
    init_tracing(args.log_format);
    let code = match start(args) {
        Ok(()) => 0,
        Err(exit) => exit.code(),
    };
    std::process::exit(code);
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pod's log gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn start(args: Args) -> Result<(), ExitReason> {
    let cfg = WorkerConfig::load(&args.config).map_err(|e| {
        error!(error = %e, "cannot load the pipeline configuration");
        ExitReason::Config
    })?;
    let ordinal = match args.ordinal.or_else(ordinal_from_environment) {
        Some(ordinal) => ordinal,
        None => {
            error!(
                "no ordinal: pass --ordinal, or run as a StatefulSet pod (POD_NAME or the host \
                 name ending in -N)"
            );
            return Err(ExitReason::Config);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            error!(error = %e, "cannot start the async runtime");
            ExitReason::Config
        })?;
    runtime.block_on(serve_and_run(cfg, ordinal, args.metrics_addr))
}

async fn serve_and_run(
    cfg: WorkerConfig,
    ordinal: u32,
    metrics_addr: SocketAddr,
) -> Result<(), ExitReason> {
    // Listen for SIGTERM before anything else: a worker stopped while it starts (a rolling
    // update right after a restart) still exits cleanly instead of by the default action.
    let signal = shutdown_signal();
    let metrics = Arc::new(Metrics::new(&cfg.pipeline));
    let health = Arc::new(Health::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    http::serve(metrics_addr, metrics.clone(), health.clone())
        .await
        .map_err(|e| {
            error!(error = %e, address = %metrics_addr, "cannot serve metrics");
            ExitReason::Config
        })?;
    info!(
        pipeline = %cfg.pipeline,
        ordinal,
        transactional_id = %run::transactional_id(&cfg, ordinal),
        "starting"
    );
    let runtime = Runtime {
        ordinal,
        metrics,
        health,
        shutdown: shutdown.clone(),
    };
    // Every librdkafka call blocks: the loop gets its own thread.
    let mut worker = tokio::task::spawn_blocking(move || run::run(cfg, runtime));
    tokio::select! {
        result = &mut worker => return joined(result),
        signal = signal => info!(signal, "shutting down"),
    }
    shutdown.store(true, Ordering::Relaxed);
    joined(worker.await)
}

fn joined(
    result: Result<Result<(), ExitReason>, tokio::task::JoinError>,
) -> Result<(), ExitReason> {
    result.unwrap_or_else(|e| {
        error!(error = %e, "the transaction loop panicked");
        Err(ExitReason::Fatal)
    })
}

/// Registers the SIGTERM handler now (not when first polled) and resolves on SIGTERM or SIGINT.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let mut term = match term {
            Ok(term) => term,
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker cleanly");
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
}

/// The trailing `-N` of `$POD_NAME`, else of the host name.
fn ordinal_from_environment() -> Option<u32> {
    let from_env = |name: &str| std::env::var(name).ok().and_then(|v| trailing_ordinal(&v));
    from_env("POD_NAME")
        .or_else(|| from_env("HOSTNAME"))
        .or_else(|| {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .iter()
                .find_map(|path| std::fs::read_to_string(path).ok())
                .and_then(|name| trailing_ordinal(name.trim()))
        })
}

fn trailing_ordinal(name: &str) -> Option<u32> {
    let (_, suffix) = name.rsplit_once('-')?;
    suffix.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_is_the_statefulset_suffix() {
        assert_eq!(trailing_ordinal("orders-by-region-worker-2"), Some(2));
        assert_eq!(trailing_ordinal("worker-10"), Some(10));
        assert_eq!(trailing_ordinal("worker"), None);
        assert_eq!(trailing_ordinal("worker-x"), None);
    }
}
