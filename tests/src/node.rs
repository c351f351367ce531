//! The environment's real node: containerd and kubelet running real containers, with a pod
//! network (bridge CNI), kube-proxy (nftables) for Service addresses and CoreDNS as the cluster
//! DNS — beside kwok's fake nodes, which stay for everything that need not run.
//!
//! ## What it does to the machine, and how that is undone
//! The node lives in namespaces of its own (mount, network, PID), held by `exactly-node-init` as
//! PID 1 under `unshare --kill-child`: when the environment stops — or its process dies — that
//! PID 1 dies and the kernel kills every process of the node, containers included; its mounts,
//! nft rules, bridge and pod network vanish with the namespaces. On the host remain, while it
//! runs: one veth link (`exn…`, its host end carrying the environment's address, where the
//! control plane and Kafka listen) with two routes through it (the pod and Service ranges), which
//! go when the link goes; and one cgroup per v1 hierarchy (`/exactly-node-<pid>-<id>`, kubelet's
//! `cgroupRoot`), removed deepest-first at shutdown, or by the next environment when this one
//! was killed. [`Node::leftovers`] lists what is left, for the no-survivor test.
//!
//! ## Reaching pods from the host
//! The host routes the node's pod range and Service range to the node's end of the veth, so the
//! test process and the operator reach pod IPs and Service ClusterIPs directly (kube-proxy's
//! rules in the node's namespace translate Service addresses, for host traffic too). DNS names
//! (`*.svc.cluster.local`) resolve only inside pods.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::EnvError;
use crate::tools::{tools_dir, version};

/// The real node's name in the API.
pub const NODE_NAME: &str = "exactly-node";
/// The taint (NoSchedule) and label of the real node: workloads that must really run tolerate
/// the taint and select the label; everything else stays on kwok's nodes.
pub const NODE_TAINT_KEY: &str = "exactly.dev/real-node";
pub const NODE_LABEL: (&str, &str) = ("exactly.dev/node", "real");
/// The StorageClass of the node's local volumes: claims of pods on the real node use it (the
/// default class is kwok's, whose volumes exist only on paper).
pub const STORAGE_CLASS: &str = "exactly-node-local";
/// How many local volumes the node offers (each a directory in the node's directory).
pub const LOCAL_VOLUMES: usize = 24;
/// Prefix of the host end of the veth link and of the node's cgroups.
const LINK_PREFIX: &str = "exn";
const CGROUP_PREFIX: &str = "exactly-node-";
/// The cgroup v1 hierarchies kubelet (cgroupfs driver) uses.
const CGROUP_V1: [&str; 9] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
];

/// The node's addresses: one /22 of 10.0.0.0/8 per environment, unused on the host, split into
/// the veth /30 (host .1, node .2), the pod range and the Service range.
#[derive(Clone, Debug)]
pub struct NodeNet {
    /// The host end of the veth: the environment's address (apiserver, etcd, Kafka).
    pub host_ip: String,
    pub node_ip: String,
    pub pod_cidr: String,
    pub pod_gateway: String,
    pub service_cidr: String,
    /// The `kubernetes` Service's ClusterIP (the first of the Service range).
    pub kubernetes_ip: String,
    /// The cluster DNS Service's ClusterIP.
    pub dns_ip: String,
    /// The host end's link name.
    pub link: String,
}

impl NodeNet {
    fn from_block(a: u8, b: u8, link: String) -> NodeNet {
        NodeNet {
            host_ip: format!("10.{a}.{b}.1"),
            node_ip: format!("10.{a}.{b}.2"),
            pod_cidr: format!("10.{a}.{}.0/24", b + 1),
            pod_gateway: format!("10.{a}.{}.1", b + 1),
            service_cidr: format!("10.{a}.{}.0/24", b + 2),
            kubernetes_ip: format!("10.{a}.{}.1", b + 2),
            dns_ip: format!("10.{a}.{}.10", b + 2),
            link,
        }
    }

    /// A block no route or address of the host overlaps (the default route aside).
    pub fn pick() -> Result<NodeNet, EnvError> {
        let routes = run_output(Command::new("ip").args(["-4", "route", "show", "table", "all"]))?;
        let addresses = run_output(Command::new("ip").args(["-4", "-o", "addr", "show"]))?;
        let taken: Vec<(u32, u32)> = routes
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .chain(
                addresses
                    .lines()
                    .filter_map(|l| l.split_whitespace().nth(3)),
            )
            .filter(|d| *d != "default")
            .filter_map(parse_cidr)
            .collect();
        for _ in 0..64 {
            let r = crate::env::random_u64();
            let a = 100 + (r % 100) as u8;
            let b = (((r >> 8) % 63) * 4) as u8;
            let block = (u32::from_be_bytes([10, a, b, 0]), 22);
            if taken.iter().all(|t| !overlaps(*t, block)) {
                // Unique per environment (two may run in one process); at most 15 bytes.
                let link = format!("{LINK_PREFIX}{:08x}", (r >> 24) as u32);
                return Ok(NodeNet::from_block(a, b, link));
            }
        }
        Err(EnvError::Setup(
            "no free /22 in 10.100.0.0-10.199.255.255 for the real node's network".into(),
        ))
    }
}

fn parse_cidr(text: &str) -> Option<(u32, u32)> {
    let (ip, bits) = text.split_once('/').unwrap_or((text, "32"));
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some((u32::from(ip), bits.parse().ok()?))
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let bits = a.1.min(b.1).min(32);
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    a.0 & mask == b.0 & mask
}

/// The node's binaries in the tools cache (`make tools`).
#[derive(Clone, Debug)]
pub struct NodeTools {
    pub kubelet_bin: PathBuf,
    pub containerd_bin: PathBuf,
    pub cni_bin: PathBuf,
    pub coredns_bin: PathBuf,
    /// The unpacked Debian packages (runc, nft and their libraries).
    pub debs_root: PathBuf,
    /// The sandbox image archive.
    pub pause_image: PathBuf,
    /// The Kafka image archive (`KAFKA_IMAGE`) for provisioned clusters on the node.
    pub kafka_image: PathBuf,
    pub kubectl: PathBuf,
}

impl NodeTools {
    pub fn locate() -> Result<NodeTools, EnvError> {
        let dir = tools_dir();
        let k8s = version("K8S_VERSION");
        let find = |sub: String, what: String| -> Result<PathBuf, EnvError> {
            let path = dir.join(sub);
            if path.exists() {
                Ok(path)
            } else {
                Err(EnvError::ToolMissing { what, path })
            }
        };
        let newest = |prefix: &str, what: &str| -> Result<PathBuf, EnvError> {
            // Keyed by content (tools/install.sh key_of): exactly one complete directory.
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| EnvError::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".tmp"))
                        && p.join(".complete").exists()
                })
                .collect();
            found.sort_by_key(|p| {
                std::fs::metadata(p.join(".complete"))
                    .and_then(|m| m.modified())
                    .ok()
            });
            found.pop().ok_or_else(|| EnvError::ToolMissing {
                what: what.to_string(),
                path: dir.join(format!("{prefix}*")),
            })
        };
        let images = newest("node-images-", "the node's pause image")?;
        Ok(NodeTools {
            kubelet_bin: find(format!("kubelet-v{k8s}/bin"), format!("kubelet v{k8s}"))?,
            containerd_bin: find(
                format!("containerd-v{}/bin", version("CONTAINERD_VERSION")),
                format!("containerd v{}", version("CONTAINERD_VERSION")),
            )?,
            cni_bin: find(
                format!("cni-plugins-v{}/bin", version("CNI_PLUGINS_VERSION")),
                format!("CNI plugins v{}", version("CNI_PLUGINS_VERSION")),
            )?,
            coredns_bin: find(
                format!("coredns-v{}/bin", version("COREDNS_VERSION")),
                format!("CoreDNS v{}", version("COREDNS_VERSION")),
            )?,
            debs_root: newest("node-debs-", "runc and nft (Debian packages)")?.join("root"),
            pause_image: images.join("pause.oci.tar"),
            kafka_image: newest("kafka-image-", "the Kafka image")?.join("kafka.oci.tar"),
            kubectl: find(format!("k8s-v{k8s}/bin/kubectl"), format!("kubectl v{k8s}"))?,
        })
    }
}

/// What the node needs from the control plane to start.
pub struct ControlPlane<'a> {
    pub api_server: String,
    pub pki_dir: &'a Path,
    /// The admin kubeconfig (CoreDNS reads Services with it).
    pub admin_kubeconfig: &'a Path,
}

/// The node's directory layout and the one-off setup of its host side.
pub struct Node {
    pub dir: PathBuf,
    pub net: NodeNet,
    pub tools: NodeTools,
    pub cgroup: String,
}

impl Node {
    /// Prepares `dir` and the node's settings; nothing runs yet. Fails with the reason when this
    /// machine cannot run a node (not root, no `unshare`/`ip`, tools missing).
    pub fn prepare(dir: &Path) -> Result<Node, EnvError> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(EnvError::Setup(
                "the real node needs root (network and mount namespaces, a veth link, cgroups); \
                 run as root, or set EXACTLY_REAL_NODE=0 to start the environment without it"
                    .into(),
            ));
        }
        for tool in ["ip", "unshare", "mount"] {
            if Command::new(tool).arg("-V").output().is_err()
                && Command::new(tool).arg("--version").output().is_err()
            {
                return Err(EnvError::Setup(format!(
                    "the real node needs `{tool}` (Debian: iproute2 / util-linux / mount)"
                )));
            }
        }
        let tools = NodeTools::locate()?;
        remove_stale_cgroups();
        let net = NodeNet::pick()?;
        for sub in [
            "logs",
            "images",
            "fake-sysctl",
            "cni/net.d",
            "cni/ipam",
            "pki",
            "kubelet",
        ] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| EnvError::io(dir, e))?;
        }
        let cgroup = format!(
            "{CGROUP_PREFIX}{}-{:04x}",
            std::process::id(),
            crate::env::random_u64() & 0xffff
        );
        Ok(Node {
            dir: dir.to_path_buf(),
            net,
            tools,
            cgroup,
        })
    }

    /// The command of the node's holder: PID 1 of new mount, network and PID namespaces, running
    /// tools/node/node.sh, which waits for its network and for [`Node::start`].
    pub fn holder_command(&self, init: &Path) -> Result<Command, EnvError> {
        let script = self.dir.join("node.sh");
        std::fs::write(&script, NODE_SCRIPT).map_err(|e| EnvError::io(&script, e))?;
        let t = &self.tools;
        let path = [
            t.containerd_bin.clone(),
            t.kubelet_bin.clone(),
            t.coredns_bin.clone(),
            self.dir.join("bin"),
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .arg(init)
        .arg("--")
        .arg("bash")
        .arg(&script)
        .env("NODE_DIR", &self.dir)
        .env("NODE_IP", &self.net.node_ip)
        .env("NODE_PREFIX", "30")
        .env("HOST_IP", &self.net.host_ip)
        .env("NODE_NAME", NODE_NAME)
        .env("NODE_PATH", path);
        Ok(c)
    }

    /// Moves the veth peer into the holder's network namespace (`holder_pid` is the `unshare`
    /// process, which is in it), addresses the host end and routes the pod and Service ranges
    /// through it. Waits until the node has addressed its end.
    pub fn connect(&self, holder_pid: u32, timeout: Duration) -> Result<(), EnvError> {
        let n = &self.net;
        let pid = holder_pid.to_string();
        // `unshare` enters its new namespaces a moment after it starts.
        let ours = std::fs::read_link("/proc/self/ns/net")
            .map_err(|e| EnvError::io(Path::new("/proc/self/ns/net"), e))?;
        let theirs = Path::new("/proc").join(&pid).join("ns/net");
        let started = Instant::now();
        while std::fs::read_link(&theirs).is_ok_and(|ns| ns == ours) {
            if started.elapsed() > timeout {
                return Err(EnvError::Setup(format!(
                    "the node's holder (pid {pid}) never entered its network namespace"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        run(Command::new("ip").args([
            "link", "add", &n.link, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]))?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/30", n.host_ip),
            "dev",
            &n.link,
        ]))?;
        run(Command::new("ip").args(["link", "set", &n.link, "up"]))?;
        let ready = self.dir.join("net-ready");
        let started = Instant::now();
        while !ready.exists() {
            if started.elapsed() > timeout {
                return Err(EnvError::Setup(format!(
                    "the node did not address its end of {} in {timeout:?}; see {}",
                    n.link,
                    self.dir.join("../logs/node.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for range in [&n.pod_cidr, &n.service_cidr] {
            run(
                Command::new("ip").args(["route", "add", range, "via", &n.node_ip, "dev", &n.link])
            )?;
        }
        Ok(())
    }

    /// Writes every config and certificate and lets the node start containerd, kubelet,
    /// kube-proxy and CoreDNS. `images` are imported into containerd before kubelet starts.
    pub fn start(&self, cp: &ControlPlane<'_>, images: &[PathBuf]) -> Result<(), EnvError> {
        let n = &self.net;
        let d = &self.dir;
        let pki = cp.pki_dir;
        let (kubelet_crt, kubelet_key) = crate::pki::issue(
            pki,
            "kubelet",
            &format!("/O=system:nodes/CN=system:node:{NODE_NAME}"),
            &[],
        )?;
        let (serving_crt, serving_key) = crate::pki::issue(
            pki,
            "kubelet-serving",
            &format!("/CN={NODE_NAME}"),
            &[format!("IP:{}", n.node_ip), format!("DNS:{NODE_NAME}")],
        )?;
        let (proxy_crt, proxy_key) =
            crate::pki::issue(pki, "kube-proxy", "/CN=system:kube-proxy", &[])?;
        let ca = pki.join("ca.crt");
        let write = |name: &str, text: String| -> Result<(), EnvError> {
            let path = d.join(name);
            std::fs::write(&path, text).map_err(|e| EnvError::io(&path, e))
        };
        write(
            "kubelet.kubeconfig",
            cert_kubeconfig(&cp.api_server, &ca, &kubelet_crt, &kubelet_key),
        )?;
        write(
            "kube-proxy.kubeconfig",
            cert_kubeconfig(&cp.api_server, &ca, &proxy_crt, &proxy_key),
        )?;
        for (name, value) in [
            ("overcommit_memory", "1"),
            ("panic", "10"),
            ("panic_on_oops", "1"),
        ] {
            write(&format!("fake-sysctl/{name}"), format!("{value}\n"))?;
        }
        write("resolv.conf", format!("nameserver {}\n", n.dns_ip))?;
        write(
            "node-resolv.conf",
            format!(
                "nameserver {}\nsearch svc.cluster.local cluster.local\noptions ndots:5\n",
                n.dns_ip
            ),
        )?;
        write("containerd.toml", self.containerd_config())?;
        write("cni/net.d/10-exactly.conflist", self.cni_config())?;
        write(
            "kubelet.yaml",
            self.kubelet_config(&ca, &serving_crt, &serving_key),
        )?;
        write("kube-proxy.yaml", self.kube_proxy_config())?;
        write("Corefile", self.corefile(cp.admin_kubeconfig))?;
        self.write_nft_wrapper()?;
        for image in std::iter::once(&self.tools.pause_image).chain(images) {
            let name = image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image.tar".into());
            let target = d.join("images").join(name);
            std::fs::copy(image, &target).map_err(|e| EnvError::io(image, e))?;
        }
        self.make_cgroups()?;
        write("go", String::new())
    }

    /// The node's local PersistentVolumes (statically provisioned, [`STORAGE_CLASS`],
    /// `Retain`), their directories made here.
    pub fn local_volumes(&self) -> Result<Vec<serde_json::Value>, EnvError> {
        (0..LOCAL_VOLUMES)
            .map(|i| {
                let path = self.dir.join(format!("volumes/pv-{i:02}"));
                std::fs::create_dir_all(&path).map_err(|e| EnvError::io(&path, e))?;
                Ok(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": format!("{NODE_NAME}-pv-{i:02}")},
                    "spec": {
                        "capacity": {"storage": "100Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "volumeMode": "Filesystem",
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "local": {"path": path},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]},
                        ]}]}},
                    },
                }))
            })
            .collect()
    }

    /// `program` run inside the node's network and mount namespaces, as a pod sees the network:
    /// pod and Service addresses, and Service names through the cluster DNS. `holder_pid` is
    /// the node holder's pid ([`crate::Environment::node_holder_pid`]).
    pub fn command_inside(&self, holder_pid: u32, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={holder_pid}"))
            .args(["--net", "--mount", "--"])
            .arg(program);
        c
    }

    /// Imports an OCI or docker archive into the running node's containerd (from the host: the
    /// socket is a file in the node's directory).
    pub fn import_image(&self, archive: &Path) -> Result<(), EnvError> {
        let ctr = self.tools.containerd_bin.join("ctr");
        run(Command::new(ctr)
            .arg("--address")
            .arg(self.dir.join("containerd/containerd.sock"))
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "overlayfs",
            ])
            .arg(archive))
    }

    fn containerd_config(&self) -> String {
        let d = self.dir.display();
        let runc = self.dir.join("bin/runc").display().to_string();
        let pause = version("PAUSE_IMAGE");
        let cni_bin = self.tools.cni_bin.display();
        format!(
            r#"# The real node's containerd: every path in the node's directory, CRI on, overlayfs,
# cgroupfs. restrict_oom_score_adj: these VMs lack CAP_SYS_RESOURCE, so runc cannot set the
# negative oom_score_adj kubelet asks for.
version = 3
root = '{d}/containerd/root'
state = '{d}/containerd/state'
temp = '{d}/containerd/tmp'
oom_score = 0
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs', 'io.containerd.differ.v1.erofs',
  'io.containerd.mount-handler.v1.erofs', 'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing']
[grpc]
  address = '{d}/containerd/containerd.sock'
[ttrpc]
  address = '{d}/containerd/containerd.sock.ttrpc'
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{d}/containerd/opt'
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '{d}/containerd/image-verifier/bin'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{pause}'
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    restrict_oom_score_adj = true
    disable_apparmor = true
    cdi_spec_dirs = []
    enable_criu = false
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{runc}'
          Root = '{d}/containerd/runc-root'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{cni_bin}']
      conf_dir = '{d}/cni/net.d'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"#
        )
    }

    fn cni_config(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "exactly-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cbr0",
                    "isGateway": true,
                    // The host routes the pod range to the node: no masquerade needed.
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.net.pod_cidr, "gateway": self.net.pod_gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.dir.join("cni/ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
        .to_string()
    }

    fn kubelet_config(&self, ca: &Path, crt: &Path, key: &Path) -> String {
        let d = self.dir.display();
        let n = &self.net;
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These VMs have cgroup v1: kubelet 1.35+ refuses to start on it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
imageServiceEndpoint: unix://{d}/containerd/containerd.sock
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {crt}
tlsPrivateKeyFile: {key}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
# Only clients with a certificate of the environment's CA get here (the apiserver).
authorization:
  mode: AlwaysAllow
failSwapOn: false
# kubelet would rewrite vm.overcommit_memory, kernel.panic and kernel.panic_on_oops host-wide;
# the node's mount namespace shows it files with the values it wants instead.
protectKernelDefaults: true
podLogsDir: {d}/podlogs
clusterDomain: cluster.local
clusterDNS: ["{dns}"]
resolvConf: {d}/resolv.conf
maxPods: 30
serializeImagePulls: false
# A container that exits is restarted after at most 1 s instead of a backoff doubling from 10 s
# to 5 min: the fault tests SIGKILL the same containers many times in a minute. A production
# node keeps the default.
featureGates:
  KubeletCrashLoopBackOffMax: true
crashLoopBackOff:
  maxContainerRestartPeriod: 1s
registerNode: true
registerWithTaints:
- {{key: "{taint}", value: "true", effect: NoSchedule}}
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
nodeStatusReportFrequency: 10s
syncFrequency: 10s
"#,
            cgroup = self.cgroup,
            node_ip = n.node_ip,
            crt = crt.display(),
            key = key.display(),
            ca = ca.display(),
            dns = n.dns_ip,
            taint = NODE_TAINT_KEY,
        )
    }

    fn kube_proxy_config(&self) -> String {
        let n = &self.net;
        format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: nftables
clusterCIDR: {pods}
# Every Service packet is masqueraded, so replies pass back through the node's conntrack also
# between pods on one bridge and for the host's own connections.
masqueradeAll: true
bindAddress: {node_ip}
healthzBindAddress: {node_ip}:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the conntrack table's size alone (a host-wide setting).
conntrack:
  maxPerCore: 0
  min: 0
"#,
            kubeconfig = self.dir.join("kube-proxy.kubeconfig").display(),
            pods = n.pod_cidr,
            node_ip = n.node_ip,
        )
    }

    fn corefile(&self, kubeconfig: &Path) -> String {
        format!(
            r#"# Cluster DNS of the environment: cluster.local only, no upstream, so no query leaves.
.:53 {{
    errors
    health {node_ip}:8080
    ready {node_ip}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} exactly-testenv
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"#,
            node_ip = self.net.node_ip,
            kubeconfig = kubeconfig.display(),
        )
    }

    /// runc and nft come from unpacked Debian packages: small wrappers put their libraries on
    /// the loader's path.
    fn write_nft_wrapper(&self) -> Result<(), EnvError> {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.dir.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| EnvError::io(&bin, e))?;
        let root = &self.tools.debs_root;
        let lib = root.join("usr/lib/x86_64-linux-gnu");
        for (name, target) in [("nft", "usr/sbin/nft"), ("runc", "usr/sbin/runc")] {
            let path = bin.join(name);
            let text = format!(
                "#!/bin/sh\nLD_LIBRARY_PATH={lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} exec {target} \"$@\"\n",
                lib = lib.display(),
                target = root.join(target).display(),
            );
            std::fs::write(&path, text).map_err(|e| EnvError::io(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| EnvError::io(&path, e))?;
        }
        Ok(())
    }

    fn make_cgroups(&self) -> Result<(), EnvError> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            // cgroup v2: one tree.
            let dir = root.join(&self.cgroup);
            return std::fs::create_dir_all(&dir).map_err(|e| EnvError::io(&dir, e));
        }
        for controller in CGROUP_V1 {
            let hierarchy = root.join(controller);
            if !hierarchy.exists() {
                continue;
            }
            let dir = hierarchy.join(&self.cgroup);
            std::fs::create_dir_all(&dir).map_err(|e| EnvError::io(&dir, e))?;
            if controller == "cpuset" {
                // A new cpuset starts empty: give it the parent's CPUs and memory nodes.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(hierarchy.join(file))
                        .map_err(|e| EnvError::io(&hierarchy, e))?;
                    std::fs::write(dir.join(file), value).map_err(|e| EnvError::io(&dir, e))?;
                }
            }
        }
        Ok(())
    }

    /// Once the node's processes are killed: removes its cgroups (deepest first) and waits for
    /// the kernel to tear down its network namespace, which takes the veth link and its routes
    /// with it (both happen a moment after the last process is gone). Bounded by `timeout`.
    pub fn clean_up(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            remove_cgroup_trees(|name| name == self.cgroup);
            let cgroups_left = cgroup_hierarchies()
                .iter()
                .any(|h| h.join(&self.cgroup).exists());
            let link_left = Path::new("/sys/class/net").join(&self.net.link).exists();
            if (!cgroups_left && !link_left) || started.elapsed() > timeout {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes the cgroups of nodes whose environment process is gone (killed before its shutdown
/// ran); every environment with a real node does this when it starts.
pub fn remove_stale_cgroups() {
    remove_cgroup_trees(|name| {
        name.strip_prefix(CGROUP_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
}

fn remove_cgroup_trees(matches: impl Fn(&str) -> bool) {
    for hierarchy in cgroup_hierarchies() {
        let Ok(entries) = std::fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(CGROUP_PREFIX) && matches(&name) {
                remove_deepest_first(&entry.path());
            }
        }
    }
}

fn remove_deepest_first(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_deepest_first(&entry.path());
            }
        }
    }
    // A cgroup directory is removed with rmdir (its files are not real files).
    let _ = std::fs::remove_dir(dir);
}

impl Node {
    /// What this node left on the host: its veth link, its cgroups, processes started from its
    /// directory and mounts under it. Empty once its environment has shut down.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Ok(links) = run_output(Command::new("ip").args(["-o", "link", "show"])) {
            for line in links.lines() {
                let name = line.split(':').nth(1).unwrap_or("").trim();
                if name.split('@').next() == Some(self.net.link.as_str()) {
                    found.push(format!("link {name}"));
                }
            }
        }
        for hierarchy in cgroup_hierarchies() {
            let dir = hierarchy.join(&self.cgroup);
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
        let marker = self.dir.display().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for entry in procs.flatten() {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
                if cmdline.contains(&marker) || String::from_utf8_lossy(&environ).contains(&marker)
                {
                    found.push(format!(
                        "process {}: {}",
                        entry.file_name().to_string_lossy(),
                        cmdline.trim()
                    ));
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines().filter(|l| l.contains(&marker)) {
            found.push(format!("mount {line}"));
        }
        found
    }
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        CGROUP_V1
            .iter()
            .map(|c| root.join(c))
            .filter(|p| p.exists())
            .collect()
    }
}

const NODE_SCRIPT: &str = include_str!("../../tools/node/node.sh");

fn cert_kubeconfig(server: &str, ca: &Path, crt: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: exactly-testenv\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: node\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: exactly-testenv\n  context:\n    cluster: exactly-testenv\n    user: node\n\
         current-context: exactly-testenv\n",
        ca = ca.display(),
        crt = crt.display(),
        key = key.display(),
    )
}

fn run(command: &mut Command) -> Result<(), EnvError> {
    run_output(command).map(|_| ())
}

fn run_output(command: &mut Command) -> Result<String, EnvError> {
    let output = command
        .output()
        .map_err(|e| EnvError::Setup(format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(EnvError::Setup(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_network_block_is_split_into_link_pods_and_services() {
        let n = NodeNet::from_block(150, 8, "exn1".into());
        assert_eq!(n.host_ip, "10.150.8.1");
        assert_eq!(n.node_ip, "10.150.8.2");
        assert_eq!(n.pod_cidr, "10.150.9.0/24");
        assert_eq!(n.service_cidr, "10.150.10.0/24");
        assert_eq!(n.kubernetes_ip, "10.150.10.1");
        assert_eq!(n.dns_ip, "10.150.10.10");
    }

    #[test]
    fn overlapping_ranges_are_detected_whichever_is_wider() {
        let block = parse_cidr("10.150.8.0/22").unwrap_or((0, 0));
        assert!(overlaps(
            block,
            parse_cidr("10.150.9.7/32").unwrap_or((0, 0))
        ));
        assert!(overlaps(block, parse_cidr("10.0.0.0/8").unwrap_or((0, 0))));
        assert!(!overlaps(
            block,
            parse_cidr("10.150.12.0/24").unwrap_or((0, 0))
        ));
        assert!(!overlaps(
            block,
            parse_cidr("192.168.0.0/16").unwrap_or((0, 0))
        ));
    }
}
