//! Apache Pulsar standalone for the tests that need it: one broker and one bookie in one JVM
//! (`org.apache.pulsar.PulsarStandaloneStarter`, from the jars `make tools` caches), metadata in
//! RocksDB (no ZooKeeper), with transactions, system topics, topic-level policies and broker
//! deduplication on (`tools/pulsar/standalone.conf`), on a loopback address of its own.
//!
//! It is not part of [`crate::Environment`]: only a test binary that asks for it ([`shared`])
//! pays its start-up. Ready means really ready: the admin REST API answers, every transaction
//! coordinator is loaded and `Ready` (a coordinator loads lazily, when the first transactional
//! client connects to it; the harness connects as one does, over Pulsar's binary protocol), and
//! the broker's health check (a message written to a bookie and read back) passes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::EnvError;
use crate::process::Component;

/// The cluster name of the standalone (`clusterName` in its configuration).
pub const CLUSTER: &str = "standalone";

/// The vendored configuration; [`render_conf`] sets the address and ports of each run.
const STANDALONE_CONF: &str = include_str!("../../tools/pulsar/standalone.conf");
const VERSION_ENV: &str = include_str!("../../tools/pulsar/version.env");
const INSTALL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/install.sh");

/// The pinned Pulsar version (`tools/pulsar/version.env`).
pub fn pinned_version() -> &'static str {
    VERSION_ENV
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "PULSAR_VERSION")
        .map(|(_, value)| value.trim())
        .unwrap_or("unknown")
}

/// How a standalone is started.
#[derive(Clone, Debug)]
pub struct PulsarOptions {
    /// Where its directory is created (default: the system temp dir).
    pub base_dir: Option<PathBuf>,
    /// The address it listens on and advertises, e.g. an environment's own (`Ports::ip`, which
    /// pods of the real node reach); default: a random `127.a.b.c` of its own.
    pub ip: Option<String>,
    /// Keep the directory (logs, data) after shutdown even when nothing failed.
    pub keep: bool,
    /// How long it may take to become ready.
    pub timeout: Duration,
    /// The JVM's maximum heap and direct memory (`-Xmx`, `-XX:MaxDirectMemorySize`).
    pub heap: String,
    pub direct_memory: String,
}

impl Default for PulsarOptions {
    fn default() -> Self {
        PulsarOptions {
            base_dir: None,
            ip: None,
            keep: std::env::var_os("EXACTLY_KEEP_ENV").is_some_and(|v| v != "0"),
            // Ready in 5-10 s with the jars in the page cache, 30-40 s without, on 2 cores.
            timeout: Duration::from_secs(180),
            // Sized for a 2-core, 24 GiB machine that also runs Kafka and Kubernetes: Pulsar's
            // own defaults (2 GiB heap, 4 GiB direct) are for a production broker.
            heap: "1g".to_string(),
            direct_memory: "1g".to_string(),
        }
    }
}

/// A running Pulsar standalone. Dropping it stops it (the shared one stops at process exit).
pub struct Pulsar {
    /// Its directory: `logs/pulsar.log`, `standalone.conf`, `metadata/`, `bookkeeper/`.
    pub dir: PathBuf,
    pub ip: String,
    /// `pulsar://<ip>:<port>`, the binary protocol's service URL.
    pub service_url: String,
    /// `http://<ip>:<port>`, the admin REST API (`/admin/v2`, `/admin/v3`, `/lookup/v2`).
    pub admin_url: String,
    /// The version the broker reports (`/admin/v2/brokers/version`).
    pub version: String,
    /// From the start of the JVM to ready.
    pub started_in: Duration,
    broker_port: u16,
    web_port: u16,
    component: Mutex<Option<Component>>,
    keep: AtomicBool,
    failures: Mutex<Vec<String>>,
    stopped: AtomicBool,
    /// Dropping it lets the thread that started the JVM end.
    release_supervisor: Mutex<Option<mpsc::Sender<()>>>,
}

fn log(message: impl AsRef<str>) {
    eprintln!("[testenv] {}", message.as_ref());
}

impl Pulsar {
    /// Starts a standalone and waits until it is ready. Blocks; callable from any thread. On
    /// failure the JVM is stopped and its directory kept; the error names its log.
    pub fn start(options: PulsarOptions) -> Result<Pulsar, EnvError> {
        let (result_tx, result_rx) = mpsc::channel();
        // The JVM's parent-death signal is tied to the thread that started it: start it from one
        // that lives as long as the standalone does (as the environment does for its components).
        std::thread::Builder::new()
            .name("exactly-pulsar".into())
            .spawn(move || {
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let result = Pulsar::start_here(options, release_tx);
                let started = result.is_ok();
                let _ = result_tx.send(result);
                if started {
                    let _ = release_rx.recv();
                }
            })
            .map_err(|e| EnvError::Setup(format!("cannot start the Pulsar supervisor: {e}")))?;
        result_rx.recv().map_err(|_| {
            EnvError::Setup("the Pulsar supervisor thread died while starting".into())
        })?
    }

    fn start_here(options: PulsarOptions, release: mpsc::Sender<()>) -> Result<Pulsar, EnvError> {
        let classpath = locate_classpath()?;
        let base = options.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "exactly-pulsar-{}-{:06x}",
            std::process::id(),
            crate::env::random_u64() & 0xff_ffff
        ));
        for sub in ["logs", "metadata", "bookkeeper"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| EnvError::io(&path, e))?;
        }
        let (ip, broker_port, web_port) = pick_address(options.ip.as_deref())?;
        let conf = render_conf(
            STANDALONE_CONF,
            &[
                ("bindAddress", ip.as_str()),
                ("advertisedAddress", ip.as_str()),
                ("brokerServicePort", &broker_port.to_string()),
                ("webServicePort", &web_port.to_string()),
            ],
        );
        write_file(&dir.join("standalone.conf"), &conf)?;
        write_file(&dir.join("log4j2.properties"), LOG4J2)?;
        let started = Instant::now();
        let log_path = dir.join("logs/pulsar.log");
        let component = Component::spawn(
            "pulsar",
            java_command(&dir, &ip, &classpath, &options),
            &log_path,
        )?;
        log(format!(
            "pulsar {} starting on {ip} in {} (pid {})",
            pinned_version(),
            dir.display(),
            component.pid()
        ));
        let mut pulsar = Pulsar {
            service_url: format!("pulsar://{ip}:{broker_port}"),
            admin_url: format!("http://{ip}:{web_port}"),
            version: pinned_version().to_string(),
            started_in: Duration::ZERO,
            dir,
            ip,
            broker_port,
            web_port,
            component: Mutex::new(Some(component)),
            keep: AtomicBool::new(options.keep),
            failures: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            release_supervisor: Mutex::new(Some(release)),
        };
        match pulsar.wait_ready(options.timeout) {
            Ok(version) => {
                pulsar.version = version;
                pulsar.started_in = started.elapsed();
                let rss = pulsar
                    .pid()
                    .and_then(crate::procfs::process_memory_kib)
                    .map(|(rss, _)| format!("{} MiB", rss / 1024))
                    .unwrap_or_else(|| "unknown".into());
                log(format!(
                    "pulsar {} ready in {:.1}s at {} (admin {}, RSS {rss})",
                    pulsar.version,
                    pulsar.started_in.as_secs_f64(),
                    pulsar.service_url,
                    pulsar.admin_url
                ));
                Ok(pulsar)
            }
            Err(e) => {
                pulsar.record_failure("its start");
                pulsar.shutdown();
                Err(e)
            }
        }
    }

    /// Polls the readiness steps in order until all pass; fails early, with the log's tail, if
    /// the JVM exits. Returns the version the broker reports.
    fn wait_ready(&self, timeout: Duration) -> Result<String, EnvError> {
        let started = Instant::now();
        let mut readiness = Readiness::default();
        let mut last_error = String::from("not ready yet");
        loop {
            if let Some(err) = self.exited_error() {
                return Err(err);
            }
            match readiness.advance(self) {
                Ok(Some(version)) => return Ok(version),
                Ok(None) => {}
                Err(e) => last_error = e,
            }
            if started.elapsed() > timeout {
                let (log, tail) = self.log_and_tail();
                return Err(EnvError::NotReady {
                    component: "pulsar",
                    waited: timeout,
                    last_error: format!("{} ({last_error})", readiness.step()),
                    log,
                    tail,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn exited_error(&self) -> Option<EnvError> {
        let mut guard = self.component.lock().unwrap_or_else(|p| p.into_inner());
        let component = guard.as_mut()?;
        let (_, status) = component.exited()?;
        Some(EnvError::Exited {
            component: "pulsar",
            status,
            log: component.log.clone(),
            tail: component.log_tail(30),
        })
    }

    fn log_and_tail(&self) -> (PathBuf, String) {
        let log = self.log_path();
        let tail = crate::process::tail(&log, 30);
        (log, tail)
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("logs/pulsar.log")
    }

    /// The JVM's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.component
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Component::pid)
    }

    /// The broker's binary-protocol port and admin (web) port.
    pub fn ports(&self) -> (u16, u16) {
        (self.broker_port, self.web_port)
    }

    /// One request to the admin REST API: `path` from the root (`/admin/v2/...`), `body` sent
    /// as JSON. Follows a redirect to this broker (Pulsar redirects to a topic's owner).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<AdminResponse, String> {
        let mut path = path.to_string();
        for _ in 0..3 {
            let response = http_request(&self.ip, self.web_port, method, &path, body)?;
            if !matches!(response.status, 301 | 302 | 307 | 308) {
                return Ok(response);
            }
            let location = response.location.clone().unwrap_or_default();
            match location.strip_prefix(&self.admin_url) {
                Some(rest) => path = rest.to_string(),
                None => return Err(format!("{method} {path}: redirected to {location}")),
            }
        }
        Err(format!("{method} {path}: too many redirects"))
    }

    /// A tenant of one test, allowed on this cluster, named `<prefix>-<random>`. When the test
    /// panics, the standalone keeps its logs at shutdown.
    pub fn tenant(&'static self, prefix: &str) -> Result<TestTenant, String> {
        let name = format!("{prefix}-{:06x}", crate::env::random_u64() & 0xff_ffff);
        let body = format!(r#"{{"adminRoles":[],"allowedClusters":["{CLUSTER}"]}}"#);
        let response = self.admin("PUT", &format!("/admin/v2/tenants/{name}"), Some(&body))?;
        if response.status != 204 {
            return Err(format!("creating tenant {name}: {response}"));
        }
        Ok(TestTenant { name, pulsar: self })
    }

    /// Notes that a test failed, so the logs are kept at shutdown.
    pub fn record_failure(&self, what: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_string());
    }

    /// Kills the JVM (its shutdown hook never ends: the bookies it started are not closed, and
    /// the data is thrown away anyway) and removes the directory, unless something failed or
    /// keeping was asked for, in which case it says where the logs are.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(mut component) = self
            .component
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            if let Some((rss, peak)) = crate::procfs::process_memory_kib(component.pid()) {
                log(format!(
                    "pulsar stopping (RSS {} MiB, peak {} MiB)",
                    rss / 1024,
                    peak / 1024
                ));
            }
            component.wait_or_kill(Instant::now());
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !failures.is_empty() || self.keep.load(Ordering::SeqCst) {
            let why = if failures.is_empty() {
                "kept as asked".to_string()
            } else {
                format!("failed: {}", failures.join(", "))
            };
            log(format!(
                "pulsar stopped; its log is kept in {} ({why})",
                self.log_path().display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        self.release_supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Drop for Pulsar {
    fn drop(&mut self) {
        self.shutdown();
    }
}

static SHARED: OnceLock<Result<Pulsar, String>> = OnceLock::new();

extern "C" fn shutdown_shared_pulsar() {
    if let Some(Ok(pulsar)) = SHARED.get() {
        pulsar.shutdown();
    }
}

/// The standalone of this test binary, started by the first test that asks for it and stopped
/// when the binary exits (its parent-death signal covers a kill).
///
/// Panics with the reason (the install command, or the log and its tail) when it cannot start:
/// a test that needs Pulsar never skips silently.
pub fn shared() -> &'static Pulsar {
    let result = SHARED.get_or_init(|| {
        let result = Pulsar::start(PulsarOptions::default()).map_err(|e| e.to_string());
        if result.is_ok() {
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(shutdown_shared_pulsar);
            }
        }
        result
    });
    match result {
        Ok(pulsar) => pulsar,
        Err(message) => panic!("Pulsar standalone did not start: {message}"),
    }
}

/// A tenant of one test ([`Pulsar::tenant`]).
pub struct TestTenant {
    pub name: String,
    pulsar: &'static Pulsar,
}

impl Drop for TestTenant {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.pulsar.record_failure(&self.name);
        }
    }
}

/// An admin API answer.
#[derive(Clone, Debug)]
pub struct AdminResponse {
    pub status: u16,
    pub body: String,
    location: Option<String>,
}

impl AdminResponse {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("{e} in {self}"))
    }
}

impl std::fmt::Display for AdminResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(400).collect();
        write!(f, "HTTP {}: {body}", self.status)
    }
}

/// Where the readiness wait stands; each step, once passed, is not repeated.
#[derive(Default)]
struct Readiness {
    /// The admin API lists the cluster.
    admin: bool,
    /// Partitions of `TRANSACTION_COORDINATOR_ASSIGN`: one transaction coordinator each.
    coordinators: Option<u32>,
    /// Coordinators connected to (and so loaded), in order.
    connected: u32,
    /// Every coordinator reports `Ready`.
    coordinators_ready: bool,
    /// `/admin/v2/brokers/health` passed.
    healthy: bool,
}

const TC_ASSIGN: &str = "pulsar/system/transaction_coordinator_assign";

impl Readiness {
    fn step(&self) -> &'static str {
        if !self.admin {
            "waiting for the admin API to list the cluster"
        } else if self.coordinators.is_none() {
            "waiting for the transaction coordinators' topic"
        } else if self.connected < self.coordinators.unwrap_or(0) {
            "connecting to the transaction coordinators"
        } else if !self.coordinators_ready {
            "waiting for the transaction coordinators to be Ready"
        } else if !self.healthy {
            "waiting for the broker's health check"
        } else {
            "reading the broker's version"
        }
    }

    /// Runs the next steps; `Some(version)` once everything passed.
    fn advance(&mut self, pulsar: &Pulsar) -> Result<Option<String>, String> {
        let get = |path: &str| -> Result<AdminResponse, String> {
            let response = pulsar.admin("GET", path, None)?;
            if response.status == 200 {
                Ok(response)
            } else {
                Err(format!("GET {path}: {response}"))
            }
        };
        if !self.admin {
            let clusters = get("/admin/v2/clusters")?;
            if !clusters.body.contains(CLUSTER) {
                return Err(format!("cluster {CLUSTER} not listed yet: {clusters}"));
            }
            self.admin = true;
        }
        let count = match self.coordinators {
            Some(count) => count,
            None => {
                // Standalone creates it once the broker runs; 404 until then.
                let response = get(&format!("/admin/v2/persistent/{TC_ASSIGN}/partitions"))?;
                let count = response
                    .json()?
                    .get("partitions")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("no coordinator partitions: {response}"))?;
                self.coordinators = Some(count);
                count
            }
        };
        while self.connected < count {
            // What a transactional client does: look the coordinator's partition up (which makes
            // the broker own its bundle), then connect to the coordinator, which loads it.
            let partition = self.connected;
            get(&format!(
                "/lookup/v2/topic/persistent/{TC_ASSIGN}-partition-{partition}"
            ))?;
            connect_transaction_coordinator(&pulsar.ip, pulsar.broker_port, u64::from(partition))
                .map_err(|e| format!("transaction coordinator {partition}: {e}"))?;
            self.connected += 1;
        }
        if !self.coordinators_ready {
            let stats = get("/admin/v3/transactions/coordinatorStats")?;
            coordinators_ready(&stats.json()?, count)?;
            self.coordinators_ready = true;
        }
        if !self.healthy {
            let health = get("/admin/v2/brokers/health")?;
            if health.body.trim() != "ok" {
                return Err(format!("health check: {health}"));
            }
            self.healthy = true;
        }
        let version = get("/admin/v2/brokers/version")?;
        Ok(Some(version.body.trim().trim_matches('"').to_string()))
    }
}

/// `Ok` when the coordinator stats (`/admin/v3/transactions/coordinatorStats`, a map from
/// coordinator id to its stats) show coordinators `0..count`, each in state `Ready`.
pub fn coordinators_ready(stats: &serde_json::Value, count: u32) -> Result<(), String> {
    for id in 0..count {
        let state = stats
            .get(id.to_string())
            .and_then(|s| s.get("state"))
            .and_then(serde_json::Value::as_str);
        if state != Some("Ready") {
            return Err(format!(
                "transaction coordinator {id} is {}",
                state.unwrap_or("not loaded")
            ));
        }
    }
    Ok(())
}

/// `conf` with each `key=value` line of `overrides` replaced (or appended when absent).
pub fn render_conf(conf: &str, overrides: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(conf.len() + 128);
    let mut seen = vec![false; overrides.len()];
    for line in conf.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match overrides.iter().position(|(k, _)| Some(*k) == key) {
            Some(i) if !line.trim_start().starts_with('#') => {
                let _ = writeln!(out, "{}={}", overrides[i].0, overrides[i].1);
                seen[i] = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (key, value)) in overrides.iter().enumerate() {
        if !seen[i] {
            let _ = writeln!(out, "{key}={value}");
        }
    }
    out
}

/// The broker's log configuration: INFO (the request log included) to stdout, which the harness
/// sends to `logs/pulsar.log`.
const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
";

fn java_command(dir: &Path, ip: &str, classpath: &str, options: &PulsarOptions) -> Command {
    let mut c = Command::new("java");
    c.current_dir(dir)
        .arg("-Xms256m")
        .arg(format!("-Xmx{}", options.heap))
        .arg(format!("-XX:MaxDirectMemorySize={}", options.direct_memory))
        // As the Kafka broker of the environment: the serial collector and C1 alone start the
        // broker in about 75 % of the time G1 and C2 take on 2 cores, with 70 % of the RSS.
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-Djava.awt.headless=true")
        // What bin/pulsar opens on JDK 17: BookKeeper's fadvise and CRC32C, Netty's direct
        // buffers and DNS resolver, and the JVM and host metrics the broker reads by reflection.
        .args([
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/java.util.zip=ALL-UNNAMED",
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
            "--add-opens=java.base/sun.net=ALL-UNNAMED",
            "--add-opens=java.management/sun.management=ALL-UNNAMED",
            "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
            "--add-opens=java.base/jdk.internal.platform=ALL-UNNAMED",
            "-Dio.netty.tryReflectionSetAccessible=true",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(classpath)
        .arg("org.apache.pulsar.PulsarStandaloneStarter")
        .arg("--config")
        .arg(dir.join("standalone.conf"))
        .arg("--advertised-address")
        .arg(ip)
        // No functions worker, no stream storage; RocksDB metadata in this run's directory (a
        // fresh one each time: the starter's shutdown does not close its bookie, so state
        // from an earlier run is never reused). The bookie takes a free port of the kernel's.
        .arg("--no-functions-worker")
        .arg("--no-stream-storage")
        .arg("--metadata-dir")
        .arg(dir.join("metadata"))
        .arg("--bookkeeper-dir")
        .arg(dir.join("bookkeeper"));
    c
}

/// The classpath `make tools` wrote (`tools/install.sh --print-pulsar` names its directory).
fn locate_classpath() -> Result<String, EnvError> {
    let what = || format!("Apache Pulsar {} (standalone)", pinned_version());
    let output = Command::new("bash")
        .args([INSTALL_SCRIPT, "--print-pulsar"])
        .output()
        .map_err(|e| EnvError::Setup(format!("{INSTALL_SCRIPT} --print-pulsar: {e}")))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || dir.as_os_str().is_empty() {
        return Err(EnvError::Setup(format!(
            "{INSTALL_SCRIPT} --print-pulsar failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let file = dir.join("classpath");
    match std::fs::read_to_string(&file) {
        Ok(classpath) if !classpath.trim().is_empty() => Ok(classpath.trim().to_string()),
        _ => Err(EnvError::ToolMissing {
            what: what(),
            path: file,
        }),
    }
}

fn write_file(path: &Path, content: &str) -> Result<(), EnvError> {
    std::fs::write(path, content).map_err(|e| EnvError::io(path, e))
}

fn random_loopback() -> String {
    let r = crate::env::random_u64();
    format!(
        "127.{}.{}.{}",
        1 + r % 254,
        1 + (r >> 8) % 254,
        1 + (r >> 16) % 254
    )
}

/// An address and the broker's and web service's ports: `ip` (else a random `127.a.b.c`) with
/// Pulsar's standard 6650 and 8080 when both are free there, else two the kernel hands out.
fn pick_address(ip: Option<&str>) -> Result<(String, u16, u16), EnvError> {
    let free = |ip: &str, port: u16| TcpListener::bind((ip, port)).is_ok();
    let tries = if ip.is_some() { 1 } else { 8 };
    for _ in 0..tries {
        let candidate = ip.map(str::to_string).unwrap_or_else(random_loopback);
        if free(&candidate, 6650) && free(&candidate, 8080) {
            return Ok((candidate, 6650, 8080));
        }
    }
    let ip = ip.map(str::to_string).unwrap_or_else(random_loopback);
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let listener = TcpListener::bind((ip.as_str(), 0))
            .map_err(|e| EnvError::Setup(format!("no free port on {ip}: {e}")))?;
        listeners.push(listener);
    }
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port()).unwrap_or(0);
    Ok((ip.clone(), port(0), port(1)))
}

/// An HTTP/1.0 request (so the answer is never chunked) over a fresh connection.
fn http_request(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<AdminResponse, String> {
    let what = |e: &dyn std::fmt::Display| format!("{method} http://{ip}:{port}{path}: {e}");
    let address = std::net::SocketAddr::new(ip.parse().map_err(|e| what(&e))?, port);
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| what(&e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| what(&e))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| what(&e))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| what(&e))?;
    parse_http_response(&raw).map_err(|e| what(&e))
}

fn parse_http_response(raw: &[u8]) -> Result<AdminResponse, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {} bytes", raw.len()))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("location"))
        .map(|(_, value)| value.trim().to_string());
    Ok(AdminResponse {
        status,
        body: body.to_string(),
        location,
    })
}

// --- Pulsar's binary protocol: just enough to connect to a transaction coordinator ---------
//
// A frame is [total size: u32 BE][command size: u32 BE][BaseCommand, protobuf] (PulsarApi.proto).
// Field numbers, checked against pulsar-common 4.0.7's generated classes: BaseCommand.type = 1,
// .connect = 2, .connected = 3, .error = 14, .tcClientConnectRequest = 62,
// .tcClientConnectResponse = 63; CommandConnect.client_version = 1, .protocol_version = 4;
// CommandTcClientConnectRequest.request_id = 1, .tc_id = 2; the response and CommandError:
// request_id = 1, error = 2 (ServerError), message = 3.

const CONNECT: u64 = 2;
const CONNECTED: u64 = 3;
const ERROR: u64 = 14;
const PING: u64 = 18;
const PONG: u64 = 19;
const TC_CLIENT_CONNECT_REQUEST: u64 = 62;
const TC_CLIENT_CONNECT_RESPONSE: u64 = 63;
/// The newest protocol version Pulsar 4.0 speaks.
const PROTOCOL_VERSION: u64 = 21;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, value);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A framed `BaseCommand { type, <field type>: message }`.
fn command_frame(kind: u64, message: &[u8]) -> Vec<u8> {
    let mut command = Vec::new();
    put_varint_field(&mut command, 1, kind);
    // Each command's message sits in the BaseCommand field whose number is its type.
    put_bytes_field(&mut command, kind as u32, message);
    let size = command.len() as u32;
    let mut frame = Vec::with_capacity(command.len() + 8);
    frame.extend_from_slice(&(size + 4).to_be_bytes());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&command);
    frame
}

/// A protobuf field's value: a varint, or length-delimited bytes.
#[derive(Debug, PartialEq)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The fields of a protobuf message (varints and length-delimited ones; fixed-width skipped).
fn fields(buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|e| e.to_string())?;
        match key & 7 {
            0 => out.push((number, Field::Varint(read_varint(buf, &mut pos)?))),
            1 => pos += 8,
            2 => {
                let len =
                    usize::try_from(read_varint(buf, &mut pos)?).map_err(|e| e.to_string())?;
                let end = pos.checked_add(len).filter(|end| *end <= buf.len());
                let end = end.ok_or("truncated field")?;
                out.push((number, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            5 => pos += 4,
            other => return Err(format!("unsupported wire type {other}")),
        }
    }
    Ok(out)
}

/// The `(type, message)` of a `BaseCommand`.
fn decode_command(command: &[u8]) -> Result<(u64, &[u8]), String> {
    let fields = fields(command)?;
    let kind = fields
        .iter()
        .find_map(|(n, f)| match (n, f) {
            (1, Field::Varint(v)) => Some(*v),
            _ => None,
        })
        .ok_or("command without a type")?;
    let message = fields
        .iter()
        .find_map(|(n, f)| match f {
            Field::Bytes(b) if u64::from(*n) == kind => Some(*b),
            _ => None,
        })
        .unwrap_or(&[]);
    Ok((kind, message))
}

/// `Err("<ServerError>: <message>")` when a response (TC connect, or a CommandError) carries an
/// error (field 2, with its text in field 3).
fn response_error(message: &[u8]) -> Result<(), String> {
    let fields = fields(message)?;
    let code = fields.iter().find_map(|(n, f)| match (n, f) {
        (2, Field::Varint(v)) => Some(*v),
        _ => None,
    });
    let text = fields.iter().find_map(|(n, f)| match (n, f) {
        (3, Field::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    });
    match code {
        None => Ok(()),
        Some(code) => Err(format!(
            "{} ({code}): {}",
            server_error_name(code),
            text.unwrap_or_default()
        )),
    }
}

fn server_error_name(code: u64) -> &'static str {
    match code {
        0 => "UnknownError",
        1 => "MetadataError",
        2 => "PersistenceError",
        3 => "AuthenticationError",
        4 => "AuthorizationError",
        6 => "ServiceNotReady",
        11 => "TopicNotFound",
        14 => "TooManyRequests",
        20 => "TransactionCoordinatorNotFound",
        21 => "InvalidTxnStatus",
        22 => "NotAllowedError",
        _ => "ServerError",
    }
}

fn read_command(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| e.to_string())?;
    let total = u32::from_be_bytes(size) as usize;
    if !(4..=5 * 1024 * 1024 + 64 * 1024).contains(&total) {
        return Err(format!("implausible frame size {total}"));
    }
    let mut frame = vec![0u8; total];
    stream.read_exact(&mut frame).map_err(|e| e.to_string())?;
    let command_size = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let command = frame
        .get(4..4 + command_size)
        .ok_or("command larger than its frame")?;
    Ok(command.to_vec())
}

/// Reads commands until one of type `want` (answering pings), failing on a CommandError.
fn await_command(stream: &mut TcpStream, want: u64) -> Result<Vec<u8>, String> {
    loop {
        let command = read_command(stream)?;
        let (kind, message) = decode_command(&command)?;
        if kind == want {
            return Ok(message.to_vec());
        }
        match kind {
            ERROR => {
                response_error(message)?;
                return Err("error without a code".into());
            }
            PING => stream
                .write_all(&command_frame(PONG, &[]))
                .map_err(|e| e.to_string())?,
            _ => {}
        }
    }
}

/// Connects to transaction coordinator `tc_id` as a transactional client does (CONNECT, then
/// TC_CLIENT_CONNECT_REQUEST); the broker loads the coordinator for it. `Ok` when it answers
/// without error.
pub fn connect_transaction_coordinator(ip: &str, port: u16, tc_id: u64) -> Result<(), String> {
    let address = std::net::SocketAddr::new(ip.parse().map_err(|e| format!("{ip}: {e}"))?, port);
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut connect = Vec::new();
    put_bytes_field(&mut connect, 1, b"exactly-testenv");
    put_varint_field(&mut connect, 4, PROTOCOL_VERSION);
    stream
        .write_all(&command_frame(CONNECT, &connect))
        .map_err(|e| e.to_string())?;
    await_command(&mut stream, CONNECTED)?;
    let mut request = Vec::new();
    put_varint_field(&mut request, 1, 1);
    put_varint_field(&mut request, 2, tc_id);
    stream
        .write_all(&command_frame(TC_CLIENT_CONNECT_REQUEST, &request))
        .map_err(|e| e.to_string())?;
    let response = await_command(&mut stream, TC_CLIENT_CONNECT_RESPONSE)?;
    response_error(&response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_conf_keeps_the_exactly_once_settings_and_a_blank_metadata_url() {
        let conf = render_conf(STANDALONE_CONF, &[]);
        for line in [
            "transactionCoordinatorEnabled=true",
            "systemTopicEnabled=true",
            "topicLevelPoliciesEnabled=true",
            "brokerDeduplicationEnabled=true",
            "functionsWorkerEnabled=false",
            // A non-blank URL is read as ZooKeeper's host:port by the starter.
            "metadataStoreUrl=",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing");
        }
    }

    #[test]
    fn render_conf_replaces_keys_and_appends_missing_ones() {
        let conf = "# bindAddress=comment\nbindAddress=127.0.0.1\nwebServicePort=8080\n";
        let out = render_conf(
            conf,
            &[("bindAddress", "127.1.2.3"), ("brokerServicePort", "7000")],
        );
        assert_eq!(
            out,
            "# bindAddress=comment\nbindAddress=127.1.2.3\nwebServicePort=8080\nbrokerServicePort=7000\n"
        );
    }

    #[test]
    fn a_connect_frame_is_sized_and_carries_its_type_twice() {
        let mut connect = Vec::new();
        put_bytes_field(&mut connect, 1, b"x");
        put_varint_field(&mut connect, 4, 21);
        let frame = command_frame(CONNECT, &connect);
        // BaseCommand: 08 02 (type CONNECT), 12 05 (field 2, 5 bytes): 0a 01 'x' 20 15.
        let command = [0x08, 0x02, 0x12, 0x05, 0x0a, 0x01, b'x', 0x20, 0x15];
        assert_eq!(&frame[..4], &(command.len() as u32 + 4).to_be_bytes());
        assert_eq!(&frame[4..8], &(command.len() as u32).to_be_bytes());
        assert_eq!(&frame[8..], &command);
    }

    #[test]
    fn a_coordinator_answer_is_read_as_success_or_its_server_error() {
        // Recorded from Pulsar 4.0.7: a success, then the answer before the bundle is owned.
        let ok = [0x08, 0x3f, 0xfa, 0x03, 0x02, 0x08, 0x01];
        let (kind, message) = decode_command(&ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kind, TC_CLIENT_CONNECT_RESPONSE);
        assert_eq!(response_error(message), Ok(()));

        let text = b"Namespace bundle not served by this instance. Please redo the lookup.";
        let mut response = Vec::new();
        put_varint_field(&mut response, 1, 1);
        put_varint_field(&mut response, 2, 6);
        put_bytes_field(&mut response, 3, text);
        let mut command = Vec::new();
        put_varint_field(&mut command, 1, TC_CLIENT_CONNECT_RESPONSE);
        put_bytes_field(&mut command, 63, &response);
        let (kind, message) = decode_command(&command).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kind, TC_CLIENT_CONNECT_RESPONSE);
        let err = response_error(message).err().unwrap_or_default();
        assert!(
            err.starts_with("ServiceNotReady (6): Namespace bundle"),
            "{err}"
        );
    }

    #[test]
    fn coordinators_are_ready_only_when_each_reports_ready() {
        let ready = serde_json::json!({"0": {"state": "Ready", "ongoingTxnSize": 0}});
        assert_eq!(coordinators_ready(&ready, 1), Ok(()));
        let missing = coordinators_ready(&ready, 2).err().unwrap_or_default();
        assert_eq!(missing, "transaction coordinator 1 is not loaded");
        let recovering = serde_json::json!({"0": {"state": "Initializing"}});
        assert!(coordinators_ready(&recovering, 1).is_err());
    }

    #[test]
    fn an_http_answer_gives_its_status_body_and_redirect() {
        let raw = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:8080/x\r\n\r\n";
        let response = parse_http_response(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status, 307);
        assert_eq!(
            response.location.as_deref(),
            Some("http://127.0.0.1:8080/x")
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[\"standalone\"]";
        let response = parse_http_response(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "[\"standalone\"]")
        );
    }

    #[test]
    fn the_pinned_version_is_of_the_4_0_line() {
        assert!(pinned_version().starts_with("4.0."), "{}", pinned_version());
    }
}
