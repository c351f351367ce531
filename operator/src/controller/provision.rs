//! Provisioned clusters: the broker configuration computed by the exactly-once rules (DESIGN §3),
//! the checks on overrides, and the Kubernetes objects that run the cluster (StatefulSets per
//! role, headless and client Services, a ConfigMap, a PodDisruptionBudget per role). Pure: the
//! KafkaCluster reconciler applies what these return.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::producer_config::ConfigViolation;
use crate::api::cluster::{ListenerAuthentication, NodePool, Profile, ProvisionedCluster};

/// Client port of the brokers.
pub const CLIENT_PORT: i32 = 9092;
/// Port of the KRaft controllers.
pub const CONTROLLER_PORT: i32 = 9093;
/// Label every child carries, naming its KafkaCluster.
pub const CLUSTER_LABEL: &str = "exactly.dev/cluster";
/// Label naming the node role (`controller`, `broker`, `combined`).
pub const ROLE_LABEL: &str = "exactly.dev/role";
/// Node ids of brokers start here (controllers count from 0), so the two never collide.
pub const BROKER_ID_BASE: i32 = 100;

/// Keys the operator sets itself.
const MANAGED: [&str; 10] = [
    "process.roles",
    "node.id",
    "listeners",
    "advertised.listeners",
    "controller.listener.names",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "log.dirs",
];

/// The node ids of the brokers (data nodes) the cluster runs.
pub fn data_node_ids(p: &ProvisionedCluster) -> Vec<i32> {
    let base = if p.combined { 0 } else { BROKER_ID_BASE };
    (0..data_nodes(p)).map(|i| base + i).collect()
}

/// Brokers that hold data: the combined nodes, or the broker pool.
pub fn data_nodes(p: &ProvisionedCluster) -> i32 {
    if p.combined {
        p.controllers.replicas
    } else {
        p.brokers.replicas
    }
}

/// Size rules of the profile.
pub fn check_size(p: &ProvisionedCluster) -> Vec<ConfigViolation> {
    let mut v = Vec::new();
    if p.profile == Profile::Production {
        if p.combined {
            v.push(ConfigViolation {
                key: "spec.provisioned.combined".into(),
                message: "combined controller/broker nodes are for profile: Development; a production cluster runs the roles apart".into(),
            });
        }
        if data_nodes(p) < 3 {
            v.push(ConfigViolation {
                key: "spec.provisioned.brokers.replicas".into(),
                message: format!(
                    "profile Production needs at least 3 brokers (replication 3, min ISR 2); {} given. Add brokers or use profile: Development",
                    data_nodes(p)
                ),
            });
        }
        if p.controllers.replicas < 3 {
            v.push(ConfigViolation {
                key: "spec.provisioned.controllers.replicas".into(),
                message: "profile Production needs at least 3 controllers for a quorum that survives one loss".into(),
            });
        }
    }
    if p.controllers.replicas % 2 == 0 {
        v.push(ConfigViolation {
            key: "spec.provisioned.controllers.replicas".into(),
            message: format!(
                "{} controllers: a KRaft quorum needs an odd number (an even one tolerates no more failures than one fewer)",
                p.controllers.replicas
            ),
        });
    }
    v
}

fn int(config: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    config.get(key).and_then(|v| v.trim().parse().ok())
}

/// The broker settings the exactly-once rules compute for `brokers` data nodes, with `overrides`
/// applied when they keep every rule. Every refused override is listed with its rule.
pub fn broker_config(
    brokers: i32,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<ConfigViolation>> {
    let n = i64::from(brokers.max(1));
    let rf = n.min(3);
    let isr = (rf - 1).max(1);
    let mut config: BTreeMap<String, String> = [
        ("default.replication.factor", rf.to_string()),
        ("min.insync.replicas", isr.to_string()),
        ("offsets.topic.replication.factor", rf.to_string()),
        ("transaction.state.log.replication.factor", rf.to_string()),
        ("transaction.state.log.min.isr", isr.to_string()),
        ("unclean.leader.election.enable", "false".to_string()),
        ("auto.create.topics.enable", "false".to_string()),
        (
            "transaction.partition.verification.enable",
            "true".to_string(),
        ),
        ("num.partitions", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut violations = Vec::new();
    let refuse = |key: &str, rule: &str| ConfigViolation {
        key: key.to_string(),
        message: format!(
            "{key}={}: {rule}",
            overrides.get(key).cloned().unwrap_or_default()
        ),
    };
    for (key, value) in overrides {
        let v = value.trim().to_ascii_lowercase();
        let violation = if MANAGED.contains(&key.as_str()) {
            Some(refuse(
                key,
                "set by the operator from the cluster's shape; it cannot be overridden",
            ))
        } else {
            match key.as_str() {
                "unclean.leader.election.enable" if v != "false" => Some(refuse(
                    key,
                    "an unclean election can drop committed records; exactly-once needs false",
                )),
                "auto.create.topics.enable" if v != "false" => Some(refuse(
                    key,
                    "topics must be declared (Topic resources), not created by a typo in a client",
                )),
                "transaction.partition.verification.enable" if v != "true" => Some(refuse(
                    key,
                    "without partition verification (KIP-890) transactions can hang",
                )),
                "default.replication.factor"
                | "offsets.topic.replication.factor"
                | "transaction.state.log.replication.factor" => match v.parse::<i64>() {
                    Ok(r) if r >= 1 && r <= n => None,
                    _ => Some(refuse(
                        key,
                        &format!("must be between 1 and the number of brokers ({n})"),
                    )),
                },
                _ => None,
            }
        };
        match violation {
            Some(violation) => violations.push(violation),
            None => {
                config.insert(key.clone(), value.clone());
            }
        }
    }
    // Cross-key rules on the result.
    let check_isr = |isr_key: &str, rf_key: &str, violations: &mut Vec<ConfigViolation>| {
        if let (Some(isr), Some(rf)) = (int(&config, isr_key), int(&config, rf_key))
            && (isr < 1 || (rf > 1 && isr >= rf) || isr > rf)
        {
            violations.push(ConfigViolation {
                key: isr_key.to_string(),
                message: format!(
                    "{isr_key}={isr} with {rf_key}={rf}: it must be at least 1 and below the replication factor, or one broker loss stops every commit"
                ),
            });
        }
    };
    check_isr(
        "min.insync.replicas",
        "default.replication.factor",
        &mut violations,
    );
    check_isr(
        "transaction.state.log.min.isr",
        "transaction.state.log.replication.factor",
        &mut violations,
    );
    if violations.is_empty() {
        Ok(config)
    } else {
        Err(violations)
    }
}

/// Names of the children of cluster `name`.
pub struct Names {
    pub config_map: String,
    pub client_service: String,
}

impl Names {
    pub fn of(name: &str) -> Names {
        Names {
            config_map: format!("{name}-kafka-config"),
            client_service: format!("{name}-kafka"),
        }
    }

    /// StatefulSet (and its headless Service) of `role`: `<name>-controllers`,
    /// `<name>-brokers`, or `<name>-nodes` for combined nodes.
    pub fn pool(name: &str, role: &str) -> String {
        format!("{name}-{}", plural(role))
    }
}

/// How status and names call the nodes of `role`.
pub fn plural(role: &str) -> &'static str {
    match role {
        "controller" => "controllers",
        "broker" => "brokers",
        _ => "nodes",
    }
}

/// What to run: one entry per role.
pub fn roles(p: &ProvisionedCluster) -> Vec<(&'static str, &NodePool)> {
    if p.combined {
        vec![("combined", &p.controllers)]
    } else {
        vec![("controller", &p.controllers), ("broker", &p.brokers)]
    }
}

fn labels(cluster: &str, role: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "kafka".to_string()),
        ("app.kubernetes.io/managed-by".into(), "exactly".into()),
        (CLUSTER_LABEL.into(), cluster.to_string()),
    ]);
    if let Some(role) = role {
        labels.insert(ROLE_LABEL.into(), role.to_string());
    }
    labels
}

fn meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The quorum's voters, `id@host:port` for `controller.quorum.voters`: a static quorum, so every
/// node formats its storage the same way and no node has to bootstrap it alone.
fn quorum(cluster: &str, namespace: &str, p: &ProvisionedCluster) -> String {
    let role = if p.combined { "combined" } else { "controller" };
    let set = Names::pool(cluster, role);
    (0..p.controllers.replicas)
        .map(|i| format!("{i}@{set}-{i}.{set}.{namespace}.svc:{CONTROLLER_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `server.properties` of `role`, with `@NODE_ID@` and `@HOST@` filled in per pod at start.
pub fn server_properties(
    cluster: &str,
    namespace: &str,
    role: &str,
    p: &ProvisionedCluster,
    broker_config: &BTreeMap<String, String>,
) -> String {
    let mut protocols = vec![
        "CONTROLLER:PLAINTEXT".to_string(),
        "PLAINTEXT:PLAINTEXT".to_string(),
    ];
    let mut extra_listeners = String::new();
    let mut extra_advertised = String::new();
    let mut listener_lines = Vec::new();
    for l in &p.listeners {
        let name = l.name.to_ascii_uppercase();
        let lower = l.name.to_ascii_lowercase();
        let scram = l.authentication == ListenerAuthentication::ScramSha512;
        let protocol = match (l.tls_secret.is_some(), scram) {
            (true, true) => "SASL_SSL",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (false, false) => "PLAINTEXT",
        };
        protocols.push(format!("{name}:{protocol}"));
        extra_listeners.push_str(&format!(",{name}://:{}", l.port));
        extra_advertised.push_str(&format!(",{name}://@HOST@:{}", l.port));
        if l.tls_secret.is_some() {
            listener_lines.push(format!("listener.name.{lower}.ssl.keystore.type=PEM"));
            listener_lines.push(format!(
                "listener.name.{lower}.ssl.keystore.location=/tmp/tls-{lower}.pem"
            ));
        }
        if scram {
            listener_lines.push(format!(
                "listener.name.{lower}.sasl.enabled.mechanisms=SCRAM-SHA-512"
            ));
            listener_lines.push(format!(
                "listener.name.{lower}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ));
        }
    }
    let mut lines = vec![
        "# Rendered by the exactly operator. Do not edit: change the KafkaCluster.".to_string(),
        "node.id=@NODE_ID@".into(),
        "log.dirs=/var/lib/kafka/data".into(),
        format!("controller.quorum.voters={}", quorum(cluster, namespace, p)),
        "controller.listener.names=CONTROLLER".into(),
        format!("listener.security.protocol.map={}", protocols.join(",")),
    ];
    match role {
        "controller" => {
            lines.push("process.roles=controller".into());
            lines.push(format!("listeners=CONTROLLER://:{CONTROLLER_PORT}"));
        }
        "broker" => {
            lines.push("process.roles=broker".into());
            lines.push(format!(
                "listeners=PLAINTEXT://:{CLIENT_PORT}{extra_listeners}"
            ));
            lines.push(format!(
                "advertised.listeners=PLAINTEXT://@HOST@:{CLIENT_PORT}{extra_advertised}"
            ));
            lines.push("inter.broker.listener.name=PLAINTEXT".into());
            lines.extend(listener_lines);
        }
        _ => {
            lines.push("process.roles=broker,controller".into());
            lines.push(format!(
                "listeners=PLAINTEXT://:{CLIENT_PORT},CONTROLLER://:{CONTROLLER_PORT}{extra_listeners}"
            ));
            lines.push(format!(
                "advertised.listeners=PLAINTEXT://@HOST@:{CLIENT_PORT}{extra_advertised}"
            ));
            lines.push("inter.broker.listener.name=PLAINTEXT".into());
            lines.extend(listener_lines);
        }
    }
    // Controllers get the same settings: in KRaft they decide with their own static values
    // what a broker's would suggest — the replication and partitions of a topic created without
    // them (default.replication.factor, num.partitions), unclean leader election, and with
    // Eligible Leader Replicas (default for clusters new in Kafka 4.1+) the cluster-level
    // min.insync.replicas, for which the brokers' own is dropped. Seen on real brokers: without
    // them a 3-broker cluster ran with min.insync.replicas 1 and created topics at replication 1.
    for (k, v) in broker_config {
        lines.push(format!("{k}={v}"));
    }
    lines.join("\n") + "\n"
}

/// FNV-1a of the rendered configuration: a change of it changes the pod template, and the
/// StatefulSet rolls its pods one at a time, each waiting for the previous to be ready.
pub fn config_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Every object of the cluster, ready for server-side apply.
pub struct Children {
    pub config_map: ConfigMap,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<StatefulSet>,
    /// One per role, named like its StatefulSet.
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Renders the children of provisioned cluster `cluster` in `namespace`.
pub fn children(
    cluster: &str,
    namespace: &str,
    cluster_id: &str,
    p: &ProvisionedCluster,
    broker_config: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Children {
    let names = Names::of(cluster);
    let image = p
        .image
        .clone()
        .unwrap_or_else(|| format!("apache/kafka:{}", p.version));
    let mut data = BTreeMap::new();
    for (role, _) in roles(p) {
        data.insert(
            format!("{role}.properties"),
            server_properties(cluster, namespace, role, p, broker_config),
        );
    }
    data.insert("cluster.id".into(), cluster_id.to_string());
    let config_map = ConfigMap {
        metadata: meta(&names.config_map, namespace, labels(cluster, None), owner),
        data: Some(data.clone()),
        ..ConfigMap::default()
    };

    let mut services = vec![Service {
        metadata: meta(
            &names.client_service,
            namespace,
            labels(cluster, None),
            owner,
        ),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([
                (CLUSTER_LABEL.to_string(), cluster.to_string()),
                ("exactly.dev/serves-clients".to_string(), "true".to_string()),
            ])),
            ports: Some(
                std::iter::once(ServicePort {
                    name: Some("kafka".into()),
                    port: CLIENT_PORT,
                    target_port: Some(IntOrString::Int(CLIENT_PORT)),
                    ..ServicePort::default()
                })
                .chain(p.listeners.iter().map(|l| ServicePort {
                    name: Some(l.name.clone()),
                    port: l.port,
                    target_port: Some(IntOrString::Int(l.port)),
                    ..ServicePort::default()
                }))
                .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }];
    let mut stateful_sets = Vec::new();
    let mut pdbs = Vec::new();
    for (role, pool) in roles(p) {
        let set = Names::pool(cluster, role);
        let serves_clients = role != "controller";
        let mut pod_labels = labels(cluster, Some(role));
        if serves_clients {
            pod_labels.insert("exactly.dev/serves-clients".into(), "true".into());
        }
        let port = if serves_clients {
            CLIENT_PORT
        } else {
            CONTROLLER_PORT
        };
        let mut ports = vec![ContainerPort {
            name: Some(
                if serves_clients {
                    "kafka"
                } else {
                    "controller"
                }
                .into(),
            ),
            container_port: port,
            ..ContainerPort::default()
        }];
        if role == "combined" {
            ports.push(ContainerPort {
                name: Some("controller".into()),
                container_port: CONTROLLER_PORT,
                ..ContainerPort::default()
            });
        }
        if serves_clients {
            for l in &p.listeners {
                ports.push(ContainerPort {
                    name: Some(l.name.clone()),
                    container_port: l.port,
                    ..ContainerPort::default()
                });
            }
        }
        // TLS key stores are assembled from the mounted Secrets on the nodes that serve
        // clients. SCRAM users are created when the metadata log is first formatted, which is
        // the controllers' (a broker's format leaves them out): from the mounted users Secret,
        // file name = user.
        let formats_metadata = role != "broker";
        let mut prepare = String::new();
        let mut scram_args = String::new();
        let mut mounts = Vec::new();
        let mut secret_volumes = Vec::new();
        for l in &p.listeners {
            let lower = l.name.to_ascii_lowercase();
            if let (true, Some(secret)) = (serves_clients, &l.tls_secret) {
                prepare.push_str(&format!(
                    "cat /etc/kafka/tls/{lower}/tls.key /etc/kafka/tls/{lower}/tls.crt > /tmp/tls-{lower}.pem\n"
                ));
                mounts.push((format!("tls-{lower}"), format!("/etc/kafka/tls/{lower}")));
                secret_volumes.push((format!("tls-{lower}"), secret.clone()));
            }
            if let (true, ListenerAuthentication::ScramSha512, Some(users)) =
                (formats_metadata, l.authentication, &l.users_secret)
            {
                scram_args.push_str(&format!(
                    "for f in /etc/kafka/users/{lower}/*; do [ -f \"$f\" ] && set -- \"$@\" --add-scram \"SCRAM-SHA-512=[name=$(basename \"$f\"),password=$(cat \"$f\")]\"; done\n"
                ));
                mounts.push((
                    format!("users-{lower}"),
                    format!("/etc/kafka/users/{lower}"),
                ));
                secret_volumes.push((format!("users-{lower}"), users.clone()));
            }
        }
        services.push(Service {
            metadata: meta(&set, namespace, labels(cluster, Some(role)), owner),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                publish_not_ready_addresses: Some(true),
                selector: Some(BTreeMap::from([
                    (CLUSTER_LABEL.to_string(), cluster.to_string()),
                    (ROLE_LABEL.to_string(), role.to_string()),
                ])),
                ports: Some(
                    ports
                        .iter()
                        .map(|p| ServicePort {
                            name: p.name.clone(),
                            port: p.container_port,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        let id_base = if role == "broker" { BROKER_ID_BASE } else { 0 };
        let start = format!(
            "set -eu\n\
             ordinal=${{HOSTNAME##*-}}\n\
             sed -e \"s/@NODE_ID@/$(({id_base} + ordinal))/g\" -e \"s/@HOST@/$HOSTNAME.{set}.{namespace}.svc/g\" \
             /config/{role}.properties > /tmp/server.properties\n\
             {prepare}\
             set --\n\
             {scram_args}\
             /opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id \"$(cat /config/cluster.id)\" --config /tmp/server.properties \"$@\"\n\
             exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties\n"
        );
        let rendered = data
            .get(&format!("{role}.properties"))
            .cloned()
            .unwrap_or_default();
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels.clone()),
                annotations: Some(BTreeMap::from([(
                    "exactly.dev/config-hash".to_string(),
                    config_hash(&rendered),
                )])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                node_selector: p
                    .placement
                    .as_ref()
                    .map(|pl| pl.node_selector.clone())
                    .filter(|selector| !selector.is_empty()),
                tolerations: p
                    .placement
                    .as_ref()
                    .map(|pl| pl.tolerations.clone())
                    .filter(|tolerations| !tolerations.is_empty()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(1000),
                    fs_group: Some(1000),
                    ..PodSecurityContext::default()
                }),
                containers: vec![Container {
                    name: "kafka".into(),
                    image: Some(image.clone()),
                    command: Some(vec!["/bin/sh".into(), "-c".into(), start]),
                    ports: Some(ports.clone()),
                    env: Some(vec![EnvVar {
                        name: "KAFKA_HEAP_OPTS".into(),
                        value: Some("-Xms512m -Xmx512m".into()),
                        ..EnvVar::default()
                    }]),
                    readiness_probe: Some(Probe {
                        tcp_socket: Some(TCPSocketAction {
                            port: IntOrString::Int(port),
                            ..TCPSocketAction::default()
                        }),
                        period_seconds: Some(5),
                        ..Probe::default()
                    }),
                    resources: pool.resources.clone(),
                    volume_mounts: Some(
                        [
                            VolumeMount {
                                name: "data".into(),
                                mount_path: "/var/lib/kafka/data".into(),
                                ..VolumeMount::default()
                            },
                            VolumeMount {
                                name: "config".into(),
                                mount_path: "/config".into(),
                                read_only: Some(true),
                                ..VolumeMount::default()
                            },
                        ]
                        .into_iter()
                        .chain(mounts.iter().map(|(name, path)| VolumeMount {
                            name: name.clone(),
                            mount_path: path.clone(),
                            read_only: Some(true),
                            ..VolumeMount::default()
                        }))
                        .collect(),
                    ),
                    ..Container::default()
                }],
                volumes: Some(
                    std::iter::once(Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: names.config_map.clone(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    })
                    .chain(secret_volumes.iter().map(|(name, secret)| Volume {
                        name: name.clone(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(secret.clone()),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }))
                    .collect(),
                ),
                ..PodSpec::default()
            }),
        };
        pdbs.push(PodDisruptionBudget {
            metadata: meta(&set, namespace, labels(cluster, Some(role)), owner),
            spec: Some(PodDisruptionBudgetSpec {
                // One pod of a role at a time may be down: a controller quorum of 3 keeps 2,
                // brokers with replication 3 and min ISR 2 keep taking writes. The roles are
                // independent, so a controller and a broker may be away together.
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        (CLUSTER_LABEL.to_string(), cluster.to_string()),
                        (ROLE_LABEL.to_string(), role.to_string()),
                    ])),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        });
        stateful_sets.push(StatefulSet {
            metadata: meta(&set, namespace, labels(cluster, Some(role)), owner),
            spec: StatefulSetSpec {
                replicas: Some(pool.replicas),
                service_name: Some(set.clone()),
                // All at once on creation (a quorum needs its members together); updates roll
                // one pod at a time, each waiting for the previous one to be ready.
                pod_management_policy: Some("Parallel".into()),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        (CLUSTER_LABEL.to_string(), cluster.to_string()),
                        (ROLE_LABEL.to_string(), role.to_string()),
                    ])),
                    ..LabelSelector::default()
                },
                template,
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        storage_class_name: pool.storage.class.clone(),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_string(),
                                Quantity(pool.storage.size.clone()),
                            )])),
                            ..VolumeResourceRequirements::default()
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            },
            ..StatefulSet::default()
        });
    }
    Children {
        config_map,
        services,
        stateful_sets,
        pdbs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(replicas: i32) -> NodePool {
        NodePool {
            replicas,
            storage: Default::default(),
            resources: None,
        }
    }

    fn cluster(brokers: i32, controllers: i32, profile: Profile) -> ProvisionedCluster {
        ProvisionedCluster {
            version: "4.3.1".into(),
            image: None,
            profile,
            combined: false,
            controllers: pool(controllers),
            brokers: pool(brokers),
            config: BTreeMap::new(),
            listeners: Vec::new(),
            placement: None,
        }
    }

    fn get<'a>(c: &'a BTreeMap<String, String>, k: &str) -> &'a str {
        c.get(k).map(String::as_str).unwrap_or_default()
    }

    #[test]
    fn three_brokers_get_replication_three_and_min_isr_two() {
        let c = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        assert_eq!(get(&c, "default.replication.factor"), "3");
        assert_eq!(get(&c, "min.insync.replicas"), "2");
        assert_eq!(get(&c, "transaction.state.log.replication.factor"), "3");
        assert_eq!(get(&c, "transaction.state.log.min.isr"), "2");
        assert_eq!(get(&c, "offsets.topic.replication.factor"), "3");
        assert_eq!(get(&c, "unclean.leader.election.enable"), "false");
        assert_eq!(get(&c, "auto.create.topics.enable"), "false");
    }

    #[test]
    fn one_broker_gets_replication_one() {
        let c = broker_config(1, &BTreeMap::new()).unwrap_or_default();
        assert_eq!(get(&c, "default.replication.factor"), "1");
        assert_eq!(get(&c, "min.insync.replicas"), "1");
    }

    #[test]
    fn five_brokers_still_replicate_three_times() {
        let c = broker_config(5, &BTreeMap::new()).unwrap_or_default();
        assert_eq!(get(&c, "default.replication.factor"), "3");
    }

    #[test]
    fn overrides_that_break_a_rule_are_refused_naming_key_and_rule() {
        let overrides = BTreeMap::from([
            (
                "unclean.leader.election.enable".to_string(),
                "true".to_string(),
            ),
            (
                "transaction.state.log.replication.factor".into(),
                "5".into(),
            ),
            ("node.id".into(), "7".into()),
            ("log.retention.hours".into(), "24".into()),
        ]);
        let violations = broker_config(3, &overrides).err().unwrap_or_default();
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "node.id",
                "transaction.state.log.replication.factor",
                "unclean.leader.election.enable"
            ]
        );
        assert!(violations[1].message.contains("number of brokers (3)"));
    }

    #[test]
    fn min_isr_at_replication_is_refused() {
        let overrides = BTreeMap::from([("min.insync.replicas".to_string(), "3".to_string())]);
        let violations = broker_config(3, &overrides).err().unwrap_or_default();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].key, "min.insync.replicas");
    }

    #[test]
    fn harmless_overrides_are_kept() {
        let overrides = BTreeMap::from([("log.retention.hours".to_string(), "24".to_string())]);
        let c = broker_config(3, &overrides).unwrap_or_default();
        assert_eq!(get(&c, "log.retention.hours"), "24");
    }

    #[test]
    fn production_needs_three_brokers_and_an_odd_quorum() {
        let keys = |p: &ProvisionedCluster| -> Vec<String> {
            check_size(p).into_iter().map(|v| v.key).collect()
        };
        assert!(keys(&cluster(3, 3, Profile::Production)).is_empty());
        assert_eq!(
            keys(&cluster(1, 3, Profile::Production)),
            ["spec.provisioned.brokers.replicas"]
        );
        assert_eq!(
            keys(&cluster(1, 2, Profile::Development)),
            ["spec.provisioned.controllers.replicas"]
        );
        assert!(keys(&cluster(1, 1, Profile::Development)).is_empty());
    }

    #[test]
    fn brokers_get_the_computed_settings_and_a_quorum_of_every_controller() {
        let p = cluster(3, 3, Profile::Production);
        let config = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        let text = server_properties("main", "shop", "broker", &p, &config);
        assert!(text.contains("process.roles=broker\n"));
        assert!(text.contains("min.insync.replicas=2\n"));
        assert!(text.contains(
            "controller.quorum.voters=0@main-controllers-0.main-controllers.shop.svc:9093,\
             1@main-controllers-1.main-controllers.shop.svc:9093,2@main-controllers-2.main-controllers.shop.svc:9093\n"
        ));
        let controller = server_properties("main", "shop", "controller", &p, &config);
        assert!(controller.contains("process.roles=controller\n"));
    }

    #[test]
    fn a_config_change_changes_the_hash() {
        assert_ne!(config_hash("a=1\n"), config_hash("a=2\n"));
        assert_eq!(config_hash("a=1\n"), config_hash("a=1\n"));
    }

    #[test]
    fn a_tls_scram_listener_is_rendered_with_its_key_store_and_login_module() {
        let mut p = cluster(3, 3, Profile::Production);
        p.listeners = vec![crate::api::cluster::Listener {
            name: "secure".into(),
            port: 9094,
            tls_secret: Some("kafka-tls".into()),
            authentication: ListenerAuthentication::ScramSha512,
            users_secret: Some("kafka-users".into()),
        }];
        let config = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        let text = server_properties("main", "shop", "broker", &p, &config);
        assert!(
            text.contains("listeners=PLAINTEXT://:9092,SECURE://:9094\n"),
            "{text}"
        );
        assert!(text.contains("SECURE:SASL_SSL"), "{text}");
        assert!(text.contains("listener.name.secure.ssl.keystore.location=/tmp/tls-secure.pem"));
        assert!(text.contains("listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512"));
        let controller = server_properties("main", "shop", "controller", &p, &config);
        assert!(
            !controller.contains("SECURE://"),
            "controllers serve no clients"
        );
    }

    /// The children of a 3x3 cluster `main` in `shop` with a TLS + SCRAM listener `secure`.
    fn children_with_a_tls_scram_listener() -> Children {
        let mut p = cluster(3, 3, Profile::Production);
        p.listeners = vec![crate::api::cluster::Listener {
            name: "secure".into(),
            port: 9094,
            tls_secret: Some("kafka-tls".into()),
            authentication: ListenerAuthentication::ScramSha512,
            users_secret: Some("kafka-users".into()),
        }];
        let config = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        children(
            "main",
            "shop",
            "id",
            &p,
            &config,
            &OwnerReference::default(),
        )
    }

    #[test]
    fn the_start_script_fills_in_every_placeholder_of_every_listener() {
        let rendered = children_with_a_tls_scram_listener();
        let set = rendered
            .stateful_sets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("main-brokers"))
            .unwrap_or_else(|| panic!("no broker set"));
        let script = set
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.command.as_ref())
            .and_then(|c| c.get(2))
            .cloned()
            .unwrap_or_default();
        // The script's first step, run as the pod would, on this machine's sh and sed.
        let dir = std::env::temp_dir().join(format!("exactly-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let data = rendered.config_map.data.clone().unwrap_or_default();
        for (name, text) in &data {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let out = dir.join("server.properties");
        let step: String = script
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
            .replace("/config/", &format!("{}/", dir.display()))
            .replace("/tmp/server.properties", &out.display().to_string());
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&step)
            .env("HOSTNAME", "main-brokers-2")
            .status()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        assert!(status.success(), "{step}");
        let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            !text.contains("@HOST@") && !text.contains("@NODE_ID@"),
            "a placeholder is left:\n{text}"
        );
        assert!(text.contains("node.id=102\n"), "{text}");
        assert!(
            text.contains(
                "advertised.listeners=PLAINTEXT://main-brokers-2.main-brokers.shop.svc:9092,\
                 SECURE://main-brokers-2.main-brokers.shop.svc:9094"
            ),
            "{text}"
        );
    }

    #[test]
    fn scram_users_are_created_by_the_controllers_format_and_tls_is_served_by_the_brokers() {
        let rendered = children_with_a_tls_scram_listener();
        let script = |set: &str| {
            rendered
                .stateful_sets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(set))
                .and_then(|s| s.spec.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.command.as_ref())
                .and_then(|c| c.get(2))
                .cloned()
                .unwrap_or_default()
        };
        let (controllers, brokers) = (script("main-controllers"), script("main-brokers"));
        assert!(controllers.contains("--add-scram"), "{controllers}");
        assert!(!controllers.contains("tls-secure.pem"), "{controllers}");
        assert!(brokers.contains("tls-secure.pem"), "{brokers}");
        assert!(!brokers.contains("--add-scram"), "{brokers}");
    }

    #[test]
    fn controllers_carry_the_settings_kraft_takes_from_them() {
        let p = cluster(3, 3, Profile::Production);
        let config = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        let controller = server_properties("main", "shop", "controller", &p, &config);
        for line in [
            "\nmin.insync.replicas=2\n",
            "\ndefault.replication.factor=3\n",
            "\nunclean.leader.election.enable=false\n",
        ] {
            assert!(controller.contains(line), "{line:?} not in {controller}");
        }
    }

    #[test]
    fn placement_puts_every_pod_on_the_selected_tolerating_nodes() {
        let mut p = cluster(3, 3, Profile::Production);
        p.placement = Some(crate::api::cluster::Placement {
            node_selector: BTreeMap::from([("pool".to_string(), "kafka".to_string())]),
            tolerations: vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        });
        let config = broker_config(3, &BTreeMap::new()).unwrap_or_default();
        let owner = OwnerReference::default();
        let rendered = children("main", "shop", "id", &p, &config, &owner);
        assert_eq!(rendered.stateful_sets.len(), 2);
        for set in &rendered.stateful_sets {
            let pod = set.spec.template.spec.clone().unwrap_or_default();
            assert_eq!(
                pod.node_selector
                    .and_then(|s| s.get("pool").cloned())
                    .as_deref(),
                Some("kafka")
            );
            assert_eq!(
                pod.tolerations
                    .and_then(|t| t.first().and_then(|t| t.key.clone()))
                    .as_deref(),
                Some("dedicated")
            );
        }
        p.placement = None;
        let rendered = children("main", "shop", "id", &p, &config, &owner);
        let pod = rendered.stateful_sets[0]
            .spec
            .template
            .spec
            .clone()
            .unwrap_or_default();
        assert_eq!((pod.node_selector, pod.tolerations), (None, None));
    }
}
