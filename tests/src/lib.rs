//! The real environment exactly's tests and demo run on: a Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake nodes) and an Apache Kafka
//! broker, installed by `make tools` and started here on free loopback ports.
//!
//! Tests share one environment per test binary ([`shared`]) and isolate themselves by namespace
//! ([`Environment::namespace`]); it is torn down when the binary exits, and its logs are kept
//! when a test failed.

pub mod env;
pub mod node;
pub mod pki;
pub mod process;
pub mod procfs;
pub mod pulsar;
pub mod pulsar_check;
pub mod tools;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use thiserror::Error;

pub use env::{Environment, Options};

/// Why the environment could not be started.
#[derive(Error, Debug)]
pub enum EnvError {
    #[error("{what} is not installed (expected at {path}): run `make tools`")]
    ToolMissing { what: String, path: PathBuf },

    #[error("{component} could not be started: {detail}")]
    Start {
        component: &'static str,
        detail: String,
    },

    #[error("{component} exited during startup ({status}); log {log}, last lines:\n{tail}")]
    Exited {
        component: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{component} was not ready after {waited:?} (last probe: {last_error}); log {log}, last lines:\n{tail}"
    )]
    NotReady {
        component: &'static str,
        waited: Duration,
        last_error: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Setup(String),
}

impl EnvError {
    pub fn io(path: &Path, source: std::io::Error) -> EnvError {
        EnvError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

static SHARED: OnceLock<Result<Environment, String>> = OnceLock::new();

extern "C" fn shutdown_shared_environment() {
    if let Some(Ok(env)) = SHARED.get() {
        env.shutdown();
    }
}

/// The environment of this test binary, started by the first test that asks for it and stopped
/// when the binary exits (also after failed tests; its parent-death signal covers a kill).
///
/// Panics with the reason, including the install command or the failing component's log tail,
/// when it cannot start: a test that needs the environment never skips silently.
pub fn shared() -> &'static Environment {
    let result = SHARED.get_or_init(|| {
        let result = Environment::start(Options::default()).map_err(|e| e.to_string());
        if result.is_ok() {
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(shutdown_shared_environment);
            }
        }
        result
    });
    match result {
        Ok(env) => env,
        Err(message) => panic!("the test environment did not start: {message}"),
    }
}

/// A namespace of one test. When the test panics, the environment keeps its logs at exit.
pub struct TestNamespace {
    pub name: String,
    env: &'static Environment,
}

impl TestNamespace {
    /// A name unique to this test for something outside Kubernetes (a Kafka topic, a group id).
    pub fn unique(&self, name: &str) -> String {
        format!("{}.{name}", self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.env.record_failure(&self.name);
        }
    }
}

impl Environment {
    /// Creates a fresh namespace `<prefix>-<random>` for one test.
    pub async fn namespace(&'static self, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{:06x}", env::random_u64() & 0xff_ffff);
        let client = self
            .client()
            .await
            .unwrap_or_else(|e| panic!("kube client: {e}"));
        let namespaces: Api<Namespace> = Api::all(client);
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"exactly.dev/test": "true"}},
        }))
        .unwrap_or_else(|e| panic!("namespace manifest: {e}"));
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace { name, env: self }
    }
}

/// Blocks until Ctrl-C or SIGTERM (for the foreground binaries).
pub fn wait_for_stop_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        Ok(())
    })
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with `what` and the last
/// value seen. Tests wait on real outcomes with this, never on sleeps.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
