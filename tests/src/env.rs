//! The environment: etcd, kube-apiserver (RBAC, token authentication, verified TLS),
//! kube-controller-manager, kube-scheduler, kwok with fake nodes, and a single-node KRaft Kafka
//! broker (a PLAINTEXT listener, and a SASL_SSL one with SCRAM credentials as a production
//! cluster is reached), on a loopback address of its own, in a temporary directory.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::EnvError;
use crate::node::Node as RealNode;
use crate::process::{Component, tail};
use crate::tools::Tools;

/// Fake nodes kwok manages; pods scheduled onto them become Running and Ready.
pub const NODE_NAMES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];

/// The SCRAM user the broker's SASL_SSL listener knows (SCRAM-SHA-256 and SCRAM-SHA-512).
pub const KAFKA_USERNAME: &str = "exactly";

/// How an environment is started.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the environment's directory is created (default: the system temp dir).
    pub base_dir: Option<PathBuf>,
    /// Keep the directory (logs, data) after shutdown even when nothing failed.
    pub keep: bool,
    /// Install the operator's CRDs once the API server is up.
    pub install_crds: bool,
    /// How long each component may take to become ready.
    pub component_timeout: Duration,
    /// Give the environment a real node (containerd and kubelet running containers, see
    /// [`crate::node`]); it starts with the first [`Environment::real_node`] call. Default: on,
    /// unless `EXACTLY_REAL_NODE=0`.
    pub real_node: bool,
    /// Start the Kubernetes control plane (etcd, kube-apiserver, controller manager, scheduler,
    /// kwok). Off, the environment is the Kafka broker alone, for what needs no API server (the
    /// Pipeline benchmark: the control plane's background work is noise on two cores); its
    /// kubeconfig then points at nothing. Default: on.
    pub kubernetes: bool,
    /// The broker JVM's maximum heap (`-Xmx`), e.g. `512m` (the default: the tests' topics fit
    /// in it) or `2g` (the scale benchmark's 20 000 partitions do not fit in 512 MiB: the
    /// broker spends its time collecting garbage).
    pub kafka_heap: String,
    /// Serve kube-apiserver's `/debug/pprof` (for profiling a benchmark: `go tool pprof` with
    /// the admin token). Default: off, unless `EXACTLY_PROFILING=1`.
    pub profiling: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_dir: None,
            keep: std::env::var_os("EXACTLY_KEEP_ENV").is_some_and(|v| v != "0"),
            install_crds: true,
            component_timeout: Duration::from_secs(120),
            real_node: std::env::var_os("EXACTLY_REAL_NODE").is_none_or(|v| v != "0"),
            kubernetes: true,
            kafka_heap: "512m".to_string(),
            profiling: std::env::var_os("EXACTLY_PROFILING").is_some_and(|v| v != "0"),
        }
    }
}

/// The listening addresses of one environment: a loopback IP of its own, so two environments
/// on one machine never meet, with the components' usual ports when they are free there.
#[derive(Clone, Debug)]
pub struct Ports {
    pub ip: String,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    pub kwok: u16,
    pub kafka: u16,
    pub kafka_controller: u16,
    /// The broker's SASL_SSL listener.
    pub kafka_secure: u16,
}

impl Ports {
    fn all(&self) -> [u16; 9] {
        [
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.kwok,
            self.kafka,
            self.kafka_controller,
            self.kafka_secure,
        ]
    }

    fn standard(ip: String) -> Ports {
        Ports {
            ip,
            etcd_client: 2379,
            etcd_peer: 2380,
            apiserver: 6443,
            controller_manager: 10257,
            scheduler: 10259,
            kwok: 10247,
            kafka: 9092,
            kafka_controller: 9093,
            kafka_secure: 9094,
        }
    }

    /// Picks a random `127.a.b.c` whose standard ports are all free; after a few tries (something
    /// holds a port on every address, e.g. a wildcard listener), takes ports the kernel hands out.
    pub fn pick() -> Result<Ports, EnvError> {
        for _ in 0..8 {
            let r = random_u64();
            let ip = format!(
                "127.{}.{}.{}",
                1 + r % 254,
                1 + (r >> 8) % 254,
                1 + (r >> 16) % 254
            );
            let ports = Ports::standard(ip);
            if ports
                .all()
                .iter()
                .all(|p| TcpListener::bind((ports.ip.as_str(), *p)).is_ok())
            {
                return Ok(ports);
            }
        }
        let r = random_u64();
        let ip = format!(
            "127.{}.{}.{}",
            1 + r % 254,
            1 + (r >> 8) % 254,
            1 + (r >> 16) % 254
        );
        let mut listeners = Vec::new();
        let mut free = Vec::new();
        for _ in 0..9 {
            let listener = TcpListener::bind((ip.as_str(), 0))
                .map_err(|e| EnvError::Setup(format!("no free port on {ip}: {e}")))?;
            free.push(listener.local_addr().map(|a| a.port()).unwrap_or(0));
            listeners.push(listener);
        }
        Ok(Ports {
            ip,
            etcd_client: free[0],
            etcd_peer: free[1],
            apiserver: free[2],
            controller_manager: free[3],
            scheduler: free[4],
            kwok: free[5],
            kafka: free[6],
            kafka_controller: free[7],
            kafka_secure: free[8],
        })
    }
}

/// A random number from the standard library's per-process hash keys and the clock.
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A running environment. Dropping it does not stop it: call [`Environment::shutdown`] (the
/// shared test environment does so at process exit).
pub struct Environment {
    /// The environment's directory: `logs/`, `pki/`, data directories, `kubeconfig`.
    pub dir: PathBuf,
    /// Admin kubeconfig (token authentication, CA-verified TLS).
    pub kubeconfig: PathBuf,
    /// `https://<ip>:<port>` of kube-apiserver.
    pub api_server: String,
    /// Kafka bootstrap address, `<ip>:<port>`, of the PLAINTEXT listener (no authentication).
    pub bootstrap_servers: String,
    /// Bootstrap address, `<ip>:<port>`, of the broker's SASL_SSL listener: TLS with a
    /// certificate for `<ip>` (and `localhost`) signed by [`Environment::kafka_ca_pem`], and
    /// SCRAM-SHA-256 or SCRAM-SHA-512 authentication as [`Environment::kafka_username`].
    pub secure_bootstrap_servers: String,
    /// PEM text of the CA that signed the broker's certificate: what a client of the secure
    /// listener trusts (Kafka's `ssl.truststore.type=PEM`, librdkafka's `ssl.ca.pem`).
    pub kafka_ca_pem: String,
    /// SCRAM user name on the secure listener ([`KAFKA_USERNAME`]).
    pub kafka_username: String,
    /// SCRAM password of [`Environment::kafka_username`], random for each environment.
    pub kafka_password: String,
    /// The Kafka version the broker logged at startup.
    pub kafka_version: String,
    pub ports: Ports,
    pub tools: Tools,
    components: Mutex<Vec<Component>>,
    keep: AtomicBool,
    failures: Mutex<Vec<String>>,
    stopped: AtomicBool,
    /// Dropping it lets the thread that started the components end.
    release_supervisor: Mutex<Option<mpsc::Sender<()>>>,
    /// The real node, when [`Options::real_node`]: prepared and connected at start, its
    /// containerd and kubelet started by the first [`Environment::real_node`].
    node: Option<RealNode>,
    node_started: Mutex<Option<Result<(), String>>>,
    operator_image: Mutex<Option<String>>,
    kafka_image: Mutex<Option<String>>,
    /// [`Options::kafka_heap`].
    kafka_heap: String,
    /// [`Options::profiling`].
    profiling: bool,
}

fn log(message: impl AsRef<str>) {
    eprintln!("[testenv] {}", message.as_ref());
}

impl Environment {
    /// Starts every component and waits until each is really ready. Blocks; callable from any
    /// thread, async or not. On failure, whatever was started is stopped and the logs are kept.
    pub fn start(options: Options) -> Result<Environment, EnvError> {
        let (result_tx, result_rx) = mpsc::channel();
        // Components are started from this thread, which lives until shutdown: their
        // parent-death signal is tied to it.
        std::thread::Builder::new()
            .name("exactly-testenv".into())
            .spawn(move || {
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let result = Environment::start_here(options, release_tx);
                let started = result.is_ok();
                let _ = result_tx.send(result);
                if started {
                    // Returns when the environment drops its sender (shutdown), or never.
                    let _ = release_rx.recv();
                }
            })
            .map_err(|e| EnvError::Setup(format!("cannot start the supervisor thread: {e}")))?;
        result_rx
            .recv()
            .map_err(|_| EnvError::Setup("the supervisor thread died while starting".into()))?
    }

    fn start_here(options: Options, release: mpsc::Sender<()>) -> Result<Environment, EnvError> {
        let started = Instant::now();
        let tools = Tools::locate()?;
        let base = options.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "exactly-env-{}-{:06x}",
            std::process::id(),
            random_u64() & 0xff_ffff
        ));
        for sub in ["logs", "pki", "etcd", "kafka"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| EnvError::io(&dir, e))?;
        }
        // With a real node, everything listens on the host end of the node's veth (an address
        // new to this host, so the standard ports are free), which pods reach too.
        let node = if options.real_node {
            Some(RealNode::prepare(&dir.join("node"))?)
        } else {
            None
        };
        let ports = match &node {
            Some(node) => Ports::standard(node.net.host_ip.clone()),
            None => Ports::pick()?,
        };
        log(format!("starting on {} in {}", ports.ip, dir.display()));
        let env = Environment {
            kubeconfig: dir.join("kubeconfig"),
            api_server: format!("https://{}:{}", ports.ip, ports.apiserver),
            bootstrap_servers: format!("{}:{}", ports.ip, ports.kafka),
            secure_bootstrap_servers: format!("{}:{}", ports.ip, ports.kafka_secure),
            // Read from the CA file once it is made.
            kafka_ca_pem: String::new(),
            kafka_username: KAFKA_USERNAME.to_string(),
            kafka_password: format!("{:016x}{:016x}", random_u64(), random_u64()),
            kafka_version: tools.kafka_version.clone(),
            dir,
            ports,
            tools,
            components: Mutex::new(Vec::new()),
            keep: AtomicBool::new(options.keep),
            failures: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            release_supervisor: Mutex::new(Some(release)),
            node,
            node_started: Mutex::new(None),
            operator_image: Mutex::new(None),
            kafka_image: Mutex::new(None),
            kafka_heap: options.kafka_heap.clone(),
            profiling: options.profiling,
        };
        match env.bring_up(&options) {
            Ok(up) => {
                let env = Environment {
                    kafka_version: up.kafka_version,
                    kafka_ca_pem: up.kafka_ca_pem,
                    ..env
                };
                log(format!(
                    "ready in {:.1}s: kube-apiserver {} (KUBECONFIG={}), Kafka {} at {} \
                     (SASL_SSL at {})",
                    started.elapsed().as_secs_f64(),
                    env.api_server,
                    env.kubeconfig.display(),
                    env.kafka_version,
                    env.bootstrap_servers,
                    env.secure_bootstrap_servers
                ));
                Ok(env)
            }
            Err(e) => {
                env.keep.store(true, Ordering::SeqCst);
                env.shutdown();
                Err(e)
            }
        }
    }

    fn bring_up(&self, options: &Options) -> Result<BroughtUp, EnvError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EnvError::Setup(format!("cannot build a tokio runtime: {e}")))?;
        let timeout = options.component_timeout;
        let p = &self.ports;

        // The node's namespaces and veth first: the environment's address is the veth's.
        if let Some(node) = &self.node {
            let init = node_init_binary()?;
            let holder = self.spawn("node", node.holder_command(&init)?)?;
            let pid = self.lock_components()[holder].pid();
            node.connect(pid, timeout)?;
        }
        // Kafka is the slowest to start: format its storage first, in parallel with etcd.
        self.write_kafka_config()?;
        let format = self.spawn("kafka-storage-format", self.kafka_format_command())?;

        let kubernetes_ip = self
            .node
            .as_ref()
            .map_or(DEFAULT_KUBERNETES_IP, |n| n.net.kubernetes_ip.as_str());
        let pki = crate::pki::generate(&self.dir.join("pki"), &p.ip, kubernetes_ip)?;
        if self.node.is_some() {
            crate::pki::issue(
                &self.dir.join("pki"),
                "apiserver-kubelet-client",
                "/O=system:masters/CN=kube-apiserver-kubelet-client",
                &[],
            )?;
        }
        let token = format!("{:016x}{:016x}", random_u64(), random_u64());
        self.write_file(
            "tokens.csv",
            &format!("{token},admin,admin-uid,system:masters\n"),
        )?;
        self.write_file(
            "kubeconfig",
            &kubeconfig_yaml(&self.api_server, &pki.ca_cert, &token),
        )?;

        if !options.kubernetes {
            self.wait_for_exit(format, timeout)?;
            let kafka = self.spawn("kafka", self.kafka_command())?;
            return self.wait_for_kafka(kafka, timeout, &pki.ca_cert);
        }
        let etcd = self.spawn("etcd", self.etcd_command())?;
        self.wait_ready(etcd, timeout, || {
            Ok(http_get(&p.ip, p.etcd_client, "/health")?.contains("\"health\":\"true\""))
        })?;

        let apiserver = self.spawn("kube-apiserver", self.apiserver_command(&pki))?;
        self.wait_for_exit(format, timeout)?;
        let kafka = self.spawn("kafka", self.kafka_command())?;

        let client = runtime.block_on(self.client())?;
        self.wait_ready(apiserver, timeout, || {
            let text = runtime
                .block_on(client.request_text(get("/readyz")?))
                .map_err(|e| e.to_string())?;
            Ok(text.trim() == "ok")
        })?;

        let kcm = self.spawn(
            "kube-controller-manager",
            self.controller_manager_command(&pki),
        )?;
        let scheduler = self.spawn("kube-scheduler", self.scheduler_command())?;
        self.write_kwok_stages()?;
        let kwok = self.spawn("kwok", self.kwok_command())?;

        let insecure = |port: u16| -> Result<Client, EnvError> {
            let url = format!("https://{}:{port}", p.ip)
                .parse()
                .map_err(|e| EnvError::Setup(format!("bad URL: {e}")))?;
            let mut config = Config::new(url);
            config.accept_invalid_certs = true; // self-signed serving certs of KCM and scheduler
            let _guard = runtime.enter();
            Client::try_from(config).map_err(|e| EnvError::Setup(format!("client: {e}")))
        };
        let scheduler_client = insecure(p.scheduler)?;
        self.wait_ready(scheduler, timeout, || {
            let text = runtime
                .block_on(scheduler_client.request_text(get("/healthz")?))
                .map_err(|e| e.to_string())?;
            Ok(text.trim() == "ok")
        })?;
        // The controller manager is working once its service-account controller has made
        // the `default` ServiceAccount (pods cannot be admitted before that).
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_ready(kcm, timeout, || {
            let found = runtime
                .block_on(service_accounts.get_opt("default"))
                .map_err(|e| e.to_string())?;
            Ok(found.is_some())
        })?;

        runtime.block_on(create_fake_nodes(&client))?;
        runtime.block_on(create_storage_class(
            &client,
            &self.tools.kwok_storage_class,
        ))?;
        let nodes: Api<Node> = Api::all(client.clone());
        self.wait_ready(kwok, timeout, || {
            let mut ready = 0;
            for name in NODE_NAMES {
                let node = runtime
                    .block_on(nodes.get(name))
                    .map_err(|e| e.to_string())?;
                if node_is_ready(&node) {
                    ready += 1;
                }
            }
            Ok(ready == NODE_NAMES.len())
        })?;

        let up = self.wait_for_kafka(kafka, timeout, &pki.ca_cert)?;
        if options.install_crds {
            runtime.block_on(install_crds(&client, timeout))?;
        }
        Ok(up)
    }

    /// Waits until the broker `kafka` (a component index) answers on both listeners.
    fn wait_for_kafka(
        &self,
        kafka: usize,
        timeout: Duration,
        ca_cert: &Path,
    ) -> Result<BroughtUp, EnvError> {
        let p = &self.ports;
        let bootstrap = self.bootstrap_servers.clone();
        let secure = (p.ip.as_str(), p.kafka_secure);
        self.wait_ready(kafka, timeout, || {
            Ok(kafka_has_a_broker(&bootstrap)? && accepts_connections(secure)?)
        })?;
        let kafka_version = kafka_version_from_log(&self.dir.join("logs/kafka.log"))
            .unwrap_or_else(|| self.tools.kafka_version.clone());
        let kafka_ca_pem =
            std::fs::read_to_string(ca_cert).map_err(|e| EnvError::io(ca_cert, e))?;
        Ok(BroughtUp {
            kafka_version,
            kafka_ca_pem,
        })
    }

    /// kwok's stages from its release, except that pods of provisioned Kafka clusters (labelled
    /// `exactly.dev/role`) become Ready 1 to 2 s after they start, as real brokers take a while:
    /// a rolling update then shows each pod away for a moment, so tests can see how many are.
    fn write_kwok_stages(&self) -> Result<(), EnvError> {
        let path = &self.tools.kwok_stages;
        let text = std::fs::read_to_string(path).map_err(|e| EnvError::io(path, e))?;
        let stages = slow_ready_stages(&text)
            .map_err(|e| EnvError::Setup(format!("{}: {e}", path.display())))?;
        self.write_file(KWOK_STAGES, &stages)
    }

    fn write_file(&self, name: &str, content: &str) -> Result<(), EnvError> {
        let path = self.dir.join(name);
        std::fs::write(&path, content).map_err(|e| EnvError::io(&path, e))
    }

    fn spawn(&self, name: &'static str, command: Command) -> Result<usize, EnvError> {
        let log_path = self.dir.join(format!("logs/{name}.log"));
        let component = Component::spawn(name, command, &log_path)?;
        let mut components = self.lock_components();
        components.push(component);
        Ok(components.len() - 1)
    }

    fn lock_components(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls `probe` until it says ready; fails early, with the log's tail, if the process exits.
    fn wait_ready(
        &self,
        index: usize,
        timeout: Duration,
        probe: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), EnvError> {
        self.wait(index, timeout, false, probe)
    }

    /// Waits for a one-shot command to exit successfully.
    fn wait_for_exit(&self, index: usize, timeout: Duration) -> Result<(), EnvError> {
        self.wait(index, timeout, true, || Ok(false))
    }

    fn wait(
        &self,
        index: usize,
        timeout: Duration,
        one_shot: bool,
        mut probe: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), EnvError> {
        let started = Instant::now();
        let mut last_error = String::from("not ready yet");
        loop {
            {
                let mut components = self.lock_components();
                let component = &mut components[index];
                match component.exited() {
                    Some((true, _)) if one_shot => return Ok(()),
                    Some((_, status)) => {
                        return Err(EnvError::Exited {
                            component: component.name,
                            status,
                            log: component.log.clone(),
                            tail: component.log_tail(30),
                        });
                    }
                    None => {}
                }
            }
            match probe() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => last_error = e,
            }
            if started.elapsed() > timeout {
                let components = self.lock_components();
                let component = &components[index];
                return Err(EnvError::NotReady {
                    component: component.name,
                    waited: timeout,
                    last_error,
                    log: component.log.clone(),
                    tail: component.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(if one_shot { 100 } else { 250 }));
        }
        let components = self.lock_components();
        log(format!(
            "{} ready ({:.1}s, pid {})",
            components[index].name,
            started.elapsed().as_secs_f64(),
            components[index].pid()
        ));
        Ok(())
    }

    fn etcd_command(&self) -> Command {
        let p = &self.ports;
        let client = format!("http://{}:{}", p.ip, p.etcd_client);
        let peer = format!("http://{}:{}", p.ip, p.etcd_peer);
        let mut c = Command::new(&self.tools.etcd);
        c.arg("--name=testenv")
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=testenv={peer}"))
            .arg("--unsafe-no-fsync") // throw-away data: durability buys nothing here
            .arg("--auto-compaction-retention=1")
            .arg("--quota-backend-bytes=4294967296")
            .arg("--log-level=warn");
        c
    }

    fn apiserver_command(&self, pki: &crate::pki::Pki) -> Command {
        let p = &self.ports;
        let mut c = Command::new(&self.tools.kube_apiserver);
        c.arg(format!("--etcd-servers=http://{}:{}", p.ip, p.etcd_client))
            .arg(format!("--bind-address={}", p.ip))
            .arg(format!("--advertise-address={}", p.ip))
            .arg(format!("--secure-port={}", p.apiserver))
            .arg(format!("--cert-dir={}", self.dir.join("pki").display()))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!(
                "--token-auth-file={}",
                self.dir.join("tokens.csv").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_key.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            .arg("--allow-privileged=true")
            .arg(format!("--profiling={}", self.profiling))
            .arg("--v=1");
        match &self.node {
            Some(node) => {
                let dir = self.dir.join("pki");
                c.arg(format!(
                    "--service-cluster-ip-range={}",
                    node.net.service_cidr
                ))
                // kubelet's own credentials are limited to its node and its pods.
                .arg("--authorization-mode=Node,RBAC")
                .arg("--enable-admission-plugins=NodeRestriction")
                .arg(format!(
                    "--kubelet-client-certificate={}",
                    dir.join("apiserver-kubelet-client.crt").display()
                ))
                .arg(format!(
                    "--kubelet-client-key={}",
                    dir.join("apiserver-kubelet-client.key").display()
                ))
                .arg(format!(
                    "--kubelet-certificate-authority={}",
                    pki.ca_cert.display()
                ))
                .arg("--kubelet-preferred-address-types=InternalIP");
            }
            None => {
                c.arg("--service-cluster-ip-range=10.96.0.0/16")
                    .arg("--authorization-mode=RBAC")
                    // The endpoint reconciler refuses loopback addresses; without a real node
                    // nothing needs the `kubernetes` Service's endpoints (kwok runs no code).
                    .arg("--endpoint-reconciler-type=none");
            }
        }
        c
    }

    fn controller_manager_command(&self, pki: &crate::pki::Pki) -> Command {
        let p = &self.ports;
        let mut c = Command::new(&self.tools.kube_controller_manager);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--bind-address={}", p.ip))
            .arg(format!("--secure-port={}", p.controller_manager))
            .arg(format!("--cert-dir={}", self.dir.join("pki/kcm").display()))
            .arg("--leader-elect=false")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.service_account_key.display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
            .arg("--use-service-account-credentials=false")
            .arg("--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics")
            .arg("--profiling=false")
            .arg("--v=1");
        c
    }

    fn scheduler_command(&self) -> Command {
        let p = &self.ports;
        let mut c = Command::new(&self.tools.kube_scheduler);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--bind-address={}", p.ip))
            .arg(format!("--secure-port={}", p.scheduler))
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("pki/scheduler").display()
            ))
            .arg("--leader-elect=false")
            .arg("--profiling=false")
            .arg("--v=1");
        c
    }

    fn kwok_command(&self) -> Command {
        let p = &self.ports;
        let mut c = Command::new(&self.tools.kwok);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--manage-all-nodes=false")
            .arg("--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake")
            .arg("--manage-nodes-with-label-selector=")
            .arg(format!("--config={}", self.dir.join(KWOK_STAGES).display()))
            .arg("--node-lease-duration-seconds=40")
            .arg("--cidr=10.244.0.1/16")
            .arg("--node-ip=10.244.0.1")
            .arg(format!("--server-address={}:{}", p.ip, p.kwok));
        c
    }

    fn java(&self) -> Command {
        let mut c = Command::new("java");
        c.arg("-Xms128m")
            .arg(format!("-Xmx{}", self.kafka_heap))
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1") // C1 only: much faster start on 2 cores
            .arg("-Djava.awt.headless=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("kafka-log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(self.tools.kafka_classpath());
        c
    }

    /// Formats the broker's storage; in KRaft, SCRAM credentials are records of the metadata
    /// log, so the secure listener's user is created here.
    fn kafka_format_command(&self) -> Command {
        let mut c = self.java();
        c.arg("kafka.tools.StorageTool")
            .arg("format")
            .arg("--standalone")
            .arg("--ignore-formatted")
            .arg(format!("--cluster-id={}", kafka_cluster_id()))
            .arg("--config")
            .arg(self.dir.join("kafka.properties"));
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            c.arg("--add-scram").arg(format!(
                "{mechanism}=[name={},password={}]",
                self.kafka_username, self.kafka_password
            ));
        }
        c
    }

    fn kafka_command(&self) -> Command {
        let mut c = self.java();
        c.arg("kafka.Kafka").arg(self.dir.join("kafka.properties"));
        c
    }

    fn write_kafka_config(&self) -> Result<(), EnvError> {
        let p = &self.ports;
        let properties = format!(
            "# single combined KRaft node; internal topics at replication 1 so transactions work\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.bootstrap.servers={ip}:{cport}\n\
             listeners=PLAINTEXT://{ip}:{port},CONTROLLER://{ip}:{cport},SASL_SSL://{ip}:{sport}\n\
             advertised.listeners=PLAINTEXT://{ip}:{port},SASL_SSL://{ip}:{sport}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL\n\
             # the secure listener: SCRAM users (made at format time) over TLS, PEM key store\n\
             sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram_login}\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_login}\n\
             listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
             listener.name.sasl_ssl.ssl.keystore.location={keystore}\n\
             # ACLs (issue #11): the plaintext listener (ANONYMOUS: the operator, the tests, the\n\
             # broker itself) and the environment's SCRAM user may do anything; any other SCRAM\n\
             # user only what an ACL allows it\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:ANONYMOUS;User:{username}\n\
             allow.everyone.if.no.acl.found=false\n\
             log.dirs={data}\n\
             num.partitions=1\n\
             default.replication.factor=1\n\
             min.insync.replicas=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=3\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=false\n\
             unclean.leader.election.enable=false\n\
             transaction.abort.timed.out.transaction.cleanup.interval.ms=5000\n\
             num.recovery.threads.per.data.dir=1\n\
             num.network.threads=2\n\
             num.io.threads=4\n",
            ip = p.ip,
            port = p.kafka,
            cport = p.kafka_controller,
            sport = p.kafka_secure,
            scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            username = KAFKA_USERNAME,
            keystore = crate::pki::Pki::in_dir(&self.dir.join("pki"))
                .kafka_keystore
                .display(),
            data = self.dir.join("kafka").display(),
        );
        self.write_file("kafka.properties", &properties)?;
        self.write_file("kafka-log4j2.properties", KAFKA_LOG4J2)
    }

    /// A kube client for the admin user (token), bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<Client, EnvError> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| EnvError::Setup(format!("reading {}: {e}", self.kubeconfig.display())))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| {
                EnvError::Setup(format!("kubeconfig {}: {e}", self.kubeconfig.display()))
            })?;
        Client::try_from(config).map_err(|e| EnvError::Setup(format!("kube client: {e}")))
    }

    /// `KEY=value` lines for a shell: `KUBECONFIG`, `KAFKA_BOOTSTRAP_SERVERS`, the secure
    /// listener's address, CA file and SCRAM credentials, and where things are.
    pub fn shell_exports(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "export KUBECONFIG={}", self.kubeconfig.display());
        let _ = writeln!(
            out,
            "export KAFKA_BOOTSTRAP_SERVERS={}",
            self.bootstrap_servers
        );
        let _ = writeln!(
            out,
            "export KAFKA_SECURE_BOOTSTRAP_SERVERS={}",
            self.secure_bootstrap_servers
        );
        let _ = writeln!(
            out,
            "export KAFKA_CA_FILE={}",
            crate::pki::Pki::in_dir(&self.dir.join("pki"))
                .ca_cert
                .display()
        );
        let _ = writeln!(out, "export KAFKA_USERNAME={}", self.kafka_username);
        // The password is printed too: the environment is local, throw-away and on a loopback
        // address, and its password is made anew each time.
        let _ = writeln!(out, "export KAFKA_PASSWORD={}", self.kafka_password);
        let _ = writeln!(
            out,
            "export KAFKA_CLASSPATH='{}'",
            self.tools.kafka_classpath()
        );
        let _ = writeln!(out, "export PATH={}:$PATH", self.tools_path());
        let _ = writeln!(out, "export EXACTLY_ENV_DIR={}", self.dir.display());
        if let Some(node) = &self.node {
            let _ = writeln!(
                out,
                "# the real node: its address, the host end of its veth, its cgroup"
            );
            let _ = writeln!(out, "export EXACTLY_NODE_IP={}", node.net.node_ip);
            let _ = writeln!(out, "export EXACTLY_NODE_LINK={}", node.net.link);
            let _ = writeln!(out, "export EXACTLY_NODE_CGROUP={}", node.cgroup);
        }
        out
    }

    /// Directories of kubectl and helm, for `PATH`.
    pub fn tools_path(&self) -> String {
        let dir_of = |p: &Path| {
            p.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        };
        format!(
            "{}:{}",
            dir_of(&self.tools.kubectl),
            dir_of(&self.tools.helm)
        )
    }

    /// Runs another process (the operator, a workload) as part of the environment: its output goes
    /// to `logs/<name>.log` and it is stopped first at shutdown. Call it from a thread that lives
    /// as long as the process should (the parent-death signal is tied to the calling thread).
    pub fn run_process(&self, name: &'static str, command: Command) -> Result<u32, EnvError> {
        let index = self.spawn(name, command)?;
        Ok(self.lock_components()[index].pid())
    }

    /// Stops the broker (SIGTERM, as a node drain would; SIGKILL after 30 s), keeps it down for
    /// `down_for`, and starts it again on the same storage and addresses; returns once it
    /// serves requests again. Every test of the binary sees the outage: fault tests that call
    /// this run in a test binary (an environment) of their own.
    pub fn restart_kafka(&'static self, down_for: Duration) -> Result<(), EnvError> {
        let bootstrap = self.bootstrap_servers.clone();
        self.restart(
            "kafka",
            down_for,
            || self.kafka_command(),
            move || kafka_has_a_broker(&bootstrap),
        )?;
        log(format!("kafka restarted at {}", self.bootstrap_servers));
        Ok(())
    }

    /// Stops kube-apiserver (SIGTERM; SIGKILL after 30 s), keeps it down for `down_for`, and
    /// starts it again with the same flags, certificates and etcd; returns once `/readyz` says
    /// `ok`. Every client of the environment sees the outage, as [`Environment::restart_kafka`].
    pub fn restart_apiserver(&'static self, down_for: Duration) -> Result<(), EnvError> {
        let pki = crate::pki::Pki::in_dir(&self.dir.join("pki"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EnvError::Setup(format!("a runtime for the readiness probe: {e}")))?;
        self.restart(
            "kube-apiserver",
            down_for,
            || self.apiserver_command(&pki),
            || {
                let client = runtime.block_on(self.client()).map_err(|e| e.to_string())?;
                let text = runtime
                    .block_on(client.request_text(get("/readyz")?))
                    .map_err(|e| e.to_string())?;
                Ok(text.trim() == "ok")
            },
        )?;
        log(format!("kube-apiserver restarted at {}", self.api_server));
        Ok(())
    }

    /// Stops the component `name`, waits `down_for`, starts it again with `command` and waits
    /// for `ready`.
    fn restart(
        &'static self,
        name: &'static str,
        down_for: Duration,
        command: impl FnOnce() -> Command,
        ready: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), EnvError> {
        {
            let mut components = self.lock_components();
            let index = components
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| EnvError::Setup(format!("no {name} component to restart")))?;
            let mut component = components.remove(index);
            drop(components);
            component.terminate();
            component.wait_or_kill(Instant::now() + Duration::from_secs(30));
        }
        std::thread::sleep(down_for);
        // The new process's parent-death signal is tied to the thread that starts it: one that
        // lives as long as the process.
        let command = command();
        let (started_tx, started_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("exactly-testenv-{name}"))
            .spawn(move || {
                let _ = started_tx.send(self.spawn(name, command));
                loop {
                    std::thread::park();
                }
            })
            .map_err(|e| EnvError::Setup(format!("cannot start a thread for {name}: {e}")))?;
        let index = started_rx
            .recv()
            .map_err(|_| EnvError::Setup(format!("the {name} starter thread died")))??;
        self.wait_ready(index, Duration::from_secs(120), ready)
    }

    /// Notes that a test failed, so the logs are kept at shutdown.
    pub fn record_failure(&self, what: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_string());
    }

    /// Process ids of the running components (empty after shutdown).
    pub fn component_pids(&self) -> Vec<(&'static str, u32)> {
        self.lock_components()
            .iter()
            .map(|c| (c.name, c.pid()))
            .collect()
    }

    /// Stops every component (SIGTERM, then SIGKILL after 10 s) and removes the directory, unless
    /// something failed or keeping was asked for, in which case it says where the logs are.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let stopping = Instant::now();
        let mut components = self.lock_components();
        // Reverse start order: clients (kwok, scheduler, controller manager) go before the API
        // server, so it has no watches left to drain, and the API server before etcd.
        for component in components.iter_mut().rev() {
            component.terminate();
            component.wait_or_kill(Instant::now() + Duration::from_secs(5));
        }
        components.clear();
        drop(components);
        if let Some(node) = &self.node {
            node.clean_up(Duration::from_secs(10));
        }
        log(format!(
            "stopped in {:.1}s",
            stopping.elapsed().as_secs_f64()
        ));
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
                "stopped; component logs kept in {} ({why})",
                self.dir.join("logs").display()
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

/// Where `make image` writes the operator image: `$EXACTLY_IMAGE_ARCHIVE`, else
/// `target/image/exactly.oci.tar` of this workspace.
pub fn operator_image_archive() -> PathBuf {
    std::env::var_os("EXACTLY_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/image/exactly.oci.tar"
            ))
        })
}

/// The `kubernetes` Service's ClusterIP without a real node (the default Service range's first).
const DEFAULT_KUBERNETES_IP: &str = "10.96.0.1";

/// `exactly-node-init`, built with the test binaries: beside the running executable (a binary
/// of this package) or one directory up (a test binary in `target/<profile>/deps`).
fn node_init_binary() -> Result<PathBuf, EnvError> {
    let exe = std::env::current_exe()
        .map_err(|e| EnvError::Setup(format!("cannot find the running executable: {e}")))?;
    let dirs = exe.ancestors().skip(1).take(2);
    for dir in dirs {
        let candidate = dir.join("exactly-node-init");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(EnvError::Setup(format!(
        "exactly-node-init not found beside {} (cargo build -p exactly-testenv --bins)",
        exe.display()
    )))
}

impl Environment {
    /// The real node, started on first use: containerd, kubelet, kube-proxy and CoreDNS, the
    /// node Ready, cluster DNS answering. Blocks (about 20 s the first time). Fails when the
    /// environment was started without one ([`Options::real_node`]) or it could not start.
    pub fn real_node(&self) -> Result<&RealNode, EnvError> {
        let Some(node) = &self.node else {
            return Err(EnvError::Setup(
                "this environment has no real node (EXACTLY_REAL_NODE=0?)".into(),
            ));
        };
        let mut started = self
            .node_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if started.is_none() {
            let result = std::thread::scope(|scope| {
                scope
                    .spawn(|| self.start_real_node(node))
                    .join()
                    .unwrap_or_else(|_| Err(EnvError::Setup("the node start panicked".into())))
            });
            if result.is_err() {
                self.keep.store(true, Ordering::SeqCst);
            }
            *started = Some(result.map_err(|e| e.to_string()));
        }
        match started.as_ref() {
            Some(Ok(())) => Ok(node),
            Some(Err(message)) => Err(EnvError::Setup(format!(
                "the real node did not start: {message}"
            ))),
            None => Err(EnvError::Setup("the real node did not start".into())),
        }
    }

    /// The pid of the real node's holder (`unshare`, in the node's network and mount
    /// namespaces), for [`RealNode::command_inside`].
    pub fn node_holder_pid(&self) -> Option<u32> {
        self.lock_components()
            .iter()
            .find(|c| c.name == "node")
            .map(|c| c.pid())
    }

    /// Whether this environment was started with a real node ([`Options::real_node`]).
    pub fn has_real_node(&self) -> bool {
        self.node.is_some()
    }

    /// Imports an image archive (OCI or docker) into the real node's containerd.
    pub fn import_image(&self, archive: &Path) -> Result<(), EnvError> {
        self.real_node()?.import_image(archive)
    }

    /// The Kafka image provisioned clusters run on the real node (`make tools`), imported on
    /// first use; its name (`KAFKA_IMAGE` of tools/versions.env).
    pub fn kafka_image(&self) -> Result<String, EnvError> {
        let mut imported = self
            .kafka_image
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(name) = imported.as_ref() {
            return Ok(name.clone());
        }
        let node = self.real_node()?;
        let started = Instant::now();
        node.import_image(&node.tools.kafka_image)?;
        let name = crate::tools::version("KAFKA_IMAGE").to_string();
        log(format!(
            "imported {name} in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        *imported = Some(name.clone());
        Ok(name)
    }

    /// The operator image (`make image`) on the real node, imported on first use; its name.
    pub fn operator_image(&self) -> Result<String, EnvError> {
        let mut imported = self
            .operator_image
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(name) = imported.as_ref() {
            return Ok(name.clone());
        }
        let archive = operator_image_archive();
        if !archive.exists() {
            return Err(EnvError::Setup(format!(
                "the operator image is not built (expected at {}): run `make image`",
                archive.display()
            )));
        }
        let started = Instant::now();
        self.import_image(&archive)?;
        let name = format!("ghcr.io/exactly-dev/exactly:{}", env!("CARGO_PKG_VERSION"));
        log(format!(
            "imported {name} from {} in {:.1}s",
            archive.display(),
            started.elapsed().as_secs_f64()
        ));
        *imported = Some(name.clone());
        Ok(name)
    }

    fn start_real_node(&self, node: &RealNode) -> Result<(), EnvError> {
        let began = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EnvError::Setup(format!("cannot build a tokio runtime: {e}")))?;
        let control_plane = crate::node::ControlPlane {
            api_server: self.api_server.clone(),
            pki_dir: &self.dir.join("pki"),
            admin_kubeconfig: &self.kubeconfig,
        };
        node.start(&control_plane, &[])?;
        let holder = self
            .lock_components()
            .iter()
            .position(|c| c.name == "node")
            .ok_or_else(|| EnvError::Setup("the node's holder is not running".into()))?;
        let client = runtime.block_on(self.client())?;
        let nodes: Api<Node> = Api::all(client.clone());
        let timeout = Duration::from_secs(120);
        let node_logs = node.dir.join("logs");
        let with_logs = |e: EnvError| {
            EnvError::Setup(format!(
                "{e}\nkubelet: {}\ncontainerd: {}",
                tail(&node_logs.join("kubelet.log"), 15),
                tail(&node_logs.join("containerd.log"), 10)
            ))
        };
        self.wait_ready(holder, timeout, || {
            let found = runtime
                .block_on(nodes.get_opt(crate::node::NODE_NAME))
                .map_err(|e| e.to_string())?;
            Ok(found.as_ref().is_some_and(node_is_ready))
        })
        .map_err(with_logs)?;
        runtime.block_on(create_cluster_dns(&client, &node.net))?;
        runtime.block_on(create_kafka_service(&client, &self.ports))?;
        runtime.block_on(create_local_volumes(&client, node))?;
        let net = &node.net;
        self.wait_ready(holder, timeout, || {
            Ok(http_status_ok(&http_get(&net.node_ip, 8181, "/ready")?)
                && http_status_ok(&http_get(&net.node_ip, 10256, "/healthz")?))
        })
        .map_err(|e| {
            EnvError::Setup(format!(
                "{e}\ncoredns: {}\nkube-proxy: {}",
                tail(&node_logs.join("coredns.log"), 10),
                tail(&node_logs.join("kube-proxy.log"), 10)
            ))
        })?;
        log(format!(
            "real node {} ready in {:.1}s: pods {}, Services {}, DNS {}",
            crate::node::NODE_NAME,
            began.elapsed().as_secs_f64(),
            net.pod_cidr,
            net.service_cidr,
            net.dns_ip
        ));
        Ok(())
    }
}

/// The in-cluster name of the environment's broker, as the examples spell it:
/// `kafka-bootstrap.kafka.svc:9092`, a Service without selector whose endpoint is the broker's
/// PLAINTEXT listener on the host (which advertises its own address, reachable from pods).
pub const IN_CLUSTER_BOOTSTRAP: &str = "kafka-bootstrap.kafka.svc:9092";

async fn create_kafka_service(client: &Client, ports: &Ports) -> Result<(), EnvError> {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let params = PatchParams::apply("exactly-testenv").force();
    let manifest = |value: serde_json::Value| value;
    let namespace: Namespace = serde_json::from_value(manifest(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka"},
    })))
    .map_err(|e| EnvError::Setup(format!("kafka Namespace: {e}")))?;
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kafka-bootstrap", "namespace": "kafka"},
        "spec": {"ports": [{"name": "kafka", "port": 9092, "targetPort": ports.kafka, "protocol": "TCP"}]},
    }))
    .map_err(|e| EnvError::Setup(format!("kafka-bootstrap Service: {e}")))?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kafka-bootstrap-host", "namespace": "kafka",
                     "labels": {"kubernetes.io/service-name": "kafka-bootstrap",
                                "endpointslice.kubernetes.io/managed-by": "exactly-testenv"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ports.ip], "conditions": {"ready": true}}],
        "ports": [{"name": "kafka", "port": ports.kafka, "protocol": "TCP"}],
    }))
    .map_err(|e| EnvError::Setup(format!("kafka-bootstrap EndpointSlice: {e}")))?;
    let failed =
        |what: &str, e: kube::Error| EnvError::Setup(format!("creating {what}: {}", short(&e)));
    Api::<Namespace>::all(client.clone())
        .patch("kafka", &params, &Patch::Apply(&namespace))
        .await
        .map_err(|e| failed("the kafka Namespace", e))?;
    Api::<Service>::namespaced(client.clone(), "kafka")
        .patch("kafka-bootstrap", &params, &Patch::Apply(&service))
        .await
        .map_err(|e| failed("the kafka-bootstrap Service", e))?;
    Api::<EndpointSlice>::namespaced(client.clone(), "kafka")
        .patch("kafka-bootstrap-host", &params, &Patch::Apply(&slice))
        .await
        .map_err(|e| failed("the kafka-bootstrap endpoints", e))?;
    Ok(())
}

/// The real node's local volumes and their StorageClass (binding when a pod is scheduled).
async fn create_local_volumes(client: &Client, node: &RealNode) -> Result<(), EnvError> {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let params = PatchParams::apply("exactly-testenv").force();
    let class: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": crate::node::STORAGE_CLASS},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }))
    .map_err(|e| EnvError::Setup(format!("local StorageClass: {e}")))?;
    Api::<StorageClass>::all(client.clone())
        .patch(crate::node::STORAGE_CLASS, &params, &Patch::Apply(&class))
        .await
        .map_err(|e| EnvError::Setup(format!("creating the local StorageClass: {}", short(&e))))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for value in node.local_volumes()? {
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let volume: PersistentVolume = serde_json::from_value(value)
            .map_err(|e| EnvError::Setup(format!("local volume {name}: {e}")))?;
        volumes
            .patch(&name, &params, &Patch::Apply(&volume))
            .await
            .map_err(|e| EnvError::Setup(format!("creating {name}: {}", short(&e))))?;
    }
    Ok(())
}

/// The cluster DNS Service: CoreDNS runs in the node's network namespace on the node's address.
async fn create_cluster_dns(client: &Client, net: &crate::node::NodeNet) -> Result<(), EnvError> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let params = PatchParams::apply("exactly-testenv").force();
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": net.dns_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    }))
    .map_err(|e| EnvError::Setup(format!("kube-dns Service: {e}")))?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-node", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": "exactly-testenv"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [net.node_ip], "conditions": {"ready": true}}],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    }))
    .map_err(|e| EnvError::Setup(format!("kube-dns EndpointSlice: {e}")))?;
    Api::<Service>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns", &params, &Patch::Apply(&service))
        .await
        .map_err(|e| EnvError::Setup(format!("creating the kube-dns Service: {}", short(&e))))?;
    Api::<EndpointSlice>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns-node", &params, &Patch::Apply(&slice))
        .await
        .map_err(|e| EnvError::Setup(format!("creating kube-dns endpoints: {}", short(&e))))?;
    Ok(())
}

/// The broker's log4j configuration: warnings, and each CreateTopics the controller handled with
/// every topic's result (the fault tests count those to show no topic was created twice).
const KAFKA_LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.clients.name = org.apache.kafka
logger.clients.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.topics.name = org.apache.kafka.controller.ReplicationControlManager
logger.topics.level = INFO
";

/// A cluster id in Kafka's format: 22 characters of base64url. Like Kafka's own
/// `Uuid.randomUuid`, never starting with `-`, which command lines would take for an option.
fn kafka_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    (0..22)
        .map(|i| {
            let index = ((bits >> (i * 6)) & 63) as usize;
            // The first character comes from the 62 alphanumerics only.
            let index = if i == 0 { index % 62 } else { index };
            ALPHABET[index] as char
        })
        .collect()
}

fn kafka_version_from_log(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.split("Kafka version: ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or(rest).to_string())
}

/// What [`Environment::bring_up`] learns that the environment keeps.
struct BroughtUp {
    /// The Kafka version the broker logged at startup.
    kafka_version: String,
    /// PEM text of the CA, which signed the broker's certificate.
    kafka_ca_pem: String,
}

/// A TCP connection to `address` is accepted (the broker opens a listener once it serves it).
fn accepts_connections(address: (&str, u16)) -> Result<bool, String> {
    std::net::TcpStream::connect(address)
        .map(|_| true)
        .map_err(|e| format!("{}:{}: {e}", address.0, address.1))
}

fn kafka_has_a_broker(bootstrap: &str) -> Result<bool, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    Ok(!metadata.brokers().is_empty())
}

fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: exactly-testenv\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: admin\n  user:\n    token: {token}\n\
         contexts:\n- name: exactly-testenv\n  context:\n    cluster: exactly-testenv\n    user: admin\n    namespace: default\n\
         current-context: exactly-testenv\n",
        ca = ca.display()
    )
}

fn get(path: &str) -> Result<http::Request<Vec<u8>>, String> {
    http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())
}

/// A plain-HTTP GET over a raw socket (etcd's health endpoint), returning the whole response.
fn http_get(ip: &str, port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((ip, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response)
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn create_fake_nodes(client: &Client) -> Result<(), EnvError> {
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, name) in NODE_NAMES.iter().enumerate() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    "topology.kubernetes.io/zone": format!("zone-{}", ["a", "b", "c"][i % 3]),
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"},
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
            },
        }))
        .map_err(|e| EnvError::Setup(format!("node manifest: {e}")))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(EnvError::Setup(format!("creating node {name}: {e}"))),
        }
    }
    Ok(())
}

/// The kwok stages file the environment writes for its kwok (see `write_kwok_stages`).
const KWOK_STAGES: &str = "kwok-stages.yaml";

/// The label provisioned Kafka pods carry (their role), which the slow-ready stage selects.
const SLOW_READY_KEY: &str = ".metadata.labels[\"exactly.dev/role\"]";

/// `stages` (kwok's multi-document stages YAML) with the `pod-ready` stage split in two: pods
/// without the `exactly.dev/role` label as before, pods with it after a 1–2 s delay.
fn slow_ready_stages(stages: &str) -> Result<String, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    let mut found = false;
    for document in serde_norway::Deserializer::from_str(stages) {
        let mut stage = serde_json::Value::deserialize(document).map_err(|e| e.to_string())?;
        if stage.is_null() {
            continue;
        }
        if stage["metadata"]["name"] == "pod-ready" {
            found = true;
            let mut slow = stage.clone();
            let expressions = |s: &mut serde_json::Value| -> Result<(), String> {
                s["spec"]["selector"]["matchExpressions"]
                    .as_array_mut()
                    .map(|_| ())
                    .ok_or_else(|| "pod-ready has no selector.matchExpressions".to_string())
            };
            expressions(&mut stage)?;
            expressions(&mut slow)?;
            if let Some(list) = stage["spec"]["selector"]["matchExpressions"].as_array_mut() {
                list.push(serde_json::json!({"key": SLOW_READY_KEY, "operator": "DoesNotExist"}));
            }
            if let Some(list) = slow["spec"]["selector"]["matchExpressions"].as_array_mut() {
                list.push(serde_json::json!({"key": SLOW_READY_KEY, "operator": "Exists"}));
            }
            slow["metadata"]["name"] = "pod-ready-slow".into();
            slow["spec"]["delay"] = serde_json::json!({
                "durationMilliseconds": 1000,
                "jitterDurationMilliseconds": 2000,
            });
            out.push(slow);
        }
        out.push(stage);
    }
    if !found {
        return Err("no pod-ready stage".into());
    }
    let mut text = String::new();
    for stage in out {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(&stage).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

/// The StorageClass whose PersistentVolumeClaims kwok provisions and binds, made the default so
/// StatefulSets with volume claim templates work as on a real cluster.
async fn create_storage_class(client: &Client, manifest: &Path) -> Result<(), EnvError> {
    let text = std::fs::read_to_string(manifest).map_err(|e| EnvError::io(manifest, e))?;
    let mut class: StorageClass = serde_norway::from_str(&text)
        .map_err(|e| EnvError::Setup(format!("{}: {e}", manifest.display())))?;
    class
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "storageclass.kubernetes.io/is-default-class".into(),
            "true".into(),
        );
    let classes: Api<StorageClass> = Api::all(client.clone());
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(EnvError::Setup(format!(
            "creating the kwok StorageClass: {e}"
        ))),
    }
}

/// Applies the operator's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client, timeout: Duration) -> Result<(), EnvError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("exactly-testenv").force();
    for crd in exactly::crdgen::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| EnvError::Setup(format!("applying CRD {name}: {}", short(&e))))?;
        let started = Instant::now();
        loop {
            let established = crds
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if started.elapsed() > timeout {
                return Err(EnvError::Setup(format!(
                    "CRD {name} not Established after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The API server's own message for an API error, without the debug dump.
fn short(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Tail of a component log by name, for assertions' messages.
pub fn component_log_tail(env: &Environment, component: &str, lines: usize) -> String {
    tail(&env.dir.join(format!("logs/{component}.log")), lines)
}

/// Whether a raw HTTP response's status line says 200 (any HTTP/1.x version).
fn http_status_ok(response: &str) -> bool {
    response
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_of_200_is_ok_in_any_http_1_version() {
        assert!(http_status_ok("HTTP/1.0 200 OK\r\n\r\nok"));
        assert!(http_status_ok("HTTP/1.1 200 OK\r\n"));
        assert!(!http_status_ok("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!http_status_ok(""));
    }

    #[test]
    fn provisioned_kafka_pods_get_a_delayed_ready_stage_and_other_pods_keep_the_fast_one() {
        let stages = "---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: pod-ready\n\
             spec:\n  resourceRef:\n    kind: Pod\n  selector:\n    matchExpressions:\n    \
             - key: '.status.podIP'\n      operator: DoesNotExist\n  next:\n    statusTemplate: x\n\
             ---\nkind: Stage\nmetadata:\n  name: pod-delete\n";
        let text = slow_ready_stages(stages).unwrap_or_else(|e| panic!("{e}"));
        let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let names: Vec<&str> = docs
            .iter()
            .filter_map(|d| d["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, ["pod-ready-slow", "pod-ready", "pod-delete"]);
        let operator_of = |d: &serde_json::Value| {
            d["spec"]["selector"]["matchExpressions"]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["key"] == SLOW_READY_KEY))
                .map(|e| e["operator"].clone())
        };
        assert_eq!(operator_of(&docs[0]), Some("Exists".into()));
        assert_eq!(operator_of(&docs[1]), Some("DoesNotExist".into()));
        assert_eq!(docs[0]["spec"]["delay"]["durationMilliseconds"], 1000);
        assert!(docs[1]["spec"].get("delay").is_none());
        assert_eq!(docs[0]["spec"]["next"], docs[1]["spec"]["next"]);
    }

    #[test]
    fn kafka_cluster_ids_have_kafkas_format_and_never_start_with_a_dash() {
        for _ in 0..2000 {
            let id = kafka_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn kafka_version_is_read_from_the_broker_log_line() {
        let dir = std::env::temp_dir().join(format!("exactly-version-test-{}", random_u64()));
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join("kafka.log");
        let _ = std::fs::write(
            &log,
            "[x] INFO Kafka version: 4.3.1 (org.apache.kafka.common.utils.AppInfoParser)\n",
        );
        assert_eq!(kafka_version_from_log(&log).as_deref(), Some("4.3.1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
