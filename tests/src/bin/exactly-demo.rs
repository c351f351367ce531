//! `make demo`: the local environment, the CRDs and the operator installed as a user would, the
//! quick-start example applied, and what a user looks at to see it worked. Runs until Ctrl-C
//! (`--once` for a single pass).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use exactly_testenv::{Environment, Options};

#[derive(Parser)]
#[command(about = "Run exactly end to end on a local control plane and Kafka broker")]
struct Args {
    /// Exit after showing the status instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// The operator binary (default: `exactly` next to this binary).
    #[arg(long, env = "EXACTLY_OPERATOR_BIN")]
    operator: Option<PathBuf>,
    /// The repository root (for crds/ and examples/).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Namespace the example goes into.
    #[arg(long, default_value = "demo")]
    namespace: String,
}

type Error = Box<dyn std::error::Error>;

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Runs a command the way a user would type it, showing it first; fails on a non-zero exit.
fn show(
    env: &Environment,
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, Error> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("$ {name} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{stdout}");
    if !output.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(stdout)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Error> {
    let operator = match args.operator.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("exactly"),
    };
    if !operator.exists() {
        return Err(format!(
            "operator binary {} not found: run `cargo build -p exactly` (make demo does)",
            operator.display()
        )
        .into());
    }

    step(
        "Starting a local Kubernetes control plane (etcd, kube-apiserver, controller manager, scheduler, kwok nodes) and a Kafka broker",
    );
    let env = Environment::start(Options {
        install_crds: false,
        ..Options::default()
    })?;
    let result = demo(&env, &args, &operator);
    if result.is_err() {
        env.record_failure("demo");
    }
    env.shutdown();
    result
}

fn demo(env: &Environment, args: &Args, operator: &Path) -> Result<(), Error> {
    let kubectl = env.tools.kubectl.clone();
    let ns = args.namespace.as_str();

    step("Installing the CRDs");
    let crds = args.repo.join("crds");
    show(
        env,
        &kubectl,
        &["apply", "--server-side", "-f", &crds.to_string_lossy()],
        None,
    )?;
    show(
        env,
        &kubectl,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        None,
    )?;

    // The operator runs as the chart's pod on the real node when there is one and the image is
    // built; else as a local process (one line says why).
    let on_node = match env.operator_image() {
        Ok(image) => Some(image),
        Err(why) => {
            println!("(the operator runs as a local process, not the chart's pod: {why})");
            None
        }
    };
    let operator_log = if on_node.is_some() {
        step(
            "Installing the operator with Helm: its pod runs on the real node, from the image `make image` built",
        );
        let chart = args.repo.join("charts/exactly");
        show(
            env,
            &env.tools.helm,
            &[
                "install",
                "exactly",
                &chart.to_string_lossy(),
                "--namespace",
                "exactly-system",
                "--create-namespace",
                "--skip-crds",
                "--set",
                "refreshInterval=3s",
                "--set",
                "nodeSelector.exactly\\.dev/node=real",
                "--set",
                "tolerations[0].key=exactly.dev/real-node",
                "--set",
                "tolerations[0].operator=Exists",
                "--set",
                "tolerations[0].effect=NoSchedule",
                "--wait",
                "--timeout",
                "120s",
            ],
            None,
        )?;
        show(
            env,
            &kubectl,
            &["get", "pods", "-n", "exactly-system", "-o", "wide"],
            None,
        )?;
        "kubectl logs -n exactly-system deploy/exactly".to_string()
    } else {
        step("Starting the operator");
        let mut command = Command::new(operator);
        command
            .args([
                "run",
                "--refresh-interval",
                "3s",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("RUST_LOG", "info");
        let pid = env.run_process("operator", command)?;
        let log = env.dir.join("logs/operator.log").display().to_string();
        println!("exactly run (pid {pid}), log: {log}");
        log
    };

    show(env, &kubectl, &["create", "namespace", ns], None)?;
    let example = std::fs::read_to_string(args.repo.join("examples/quickstart.yaml"))?;
    let example = if on_node.is_some() {
        step(&format!(
            "Applying examples/quickstart.yaml in namespace {ns} as it is: in the cluster \
             kafka-bootstrap.kafka.svc:9092 is the local broker ({})",
            env.bootstrap_servers
        ));
        example
    } else {
        step(&format!(
            "Applying examples/quickstart.yaml in namespace {ns}, pointed at the local broker {}",
            env.bootstrap_servers
        ));
        example.replace("kafka-bootstrap.kafka.svc:9092", &env.bootstrap_servers)
    };
    show(
        env,
        &kubectl,
        &["apply", "-n", ns, "-f", "-"],
        Some(&example),
    )?;

    step("Waiting for the Topics, the Producer, the ConsumerGroup and the Pipeline to be Ready");
    show(
        env,
        &kubectl,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            "topic/orders",
            "producer/orders-writer",
            "consumergroup/billing",
            "topic/charges",
            "pipeline/charging",
            "--timeout=90s",
        ],
        None,
    )?;

    step(
        "A transactional workload: the orders writer commits 5 transactions of 10 orders, then leaves a 6th open; the billing consumer (read_committed) processes and commits 20",
    );
    let properties = show(
        env,
        &kubectl,
        &[
            "get",
            "secret",
            "orders-writer-client",
            "-n",
            ns,
            "-o",
            "go-template={{index .data \"instance-0.properties\" | base64decode}}",
        ],
        None,
    )?;
    // This program runs on the host, where Service names do not resolve: it reaches the broker
    // at its own address.
    let properties = properties.replace("kafka-bootstrap.kafka.svc:9092", &env.bootstrap_servers);
    let open = workload(env, &properties)?;

    if on_node.is_some() {
        step(
            "The charging Pipeline's workers on the real node: its StatefulSet's pods run exactly-worker from the operator's image",
        );
        show(
            env,
            &kubectl,
            &[
                "patch",
                "pipeline",
                "charging",
                "-n",
                ns,
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"placement":{"nodeSelector":{"exactly.dev/node":"real"},"tolerations":[{"key":"exactly.dev/real-node","operator":"Exists","effect":"NoSchedule"}]}}}"#,
            ],
            None,
        )?;
        wait_for_worker_pods(env, &kubectl, ns)?;
    } else {
        run_worker_process(env, ns, operator)?;
    }
    // Let the worker copy the committed orders and the operator's refresh (3 s here) pick the
    // figures up.
    std::thread::sleep(std::time::Duration::from_secs(12));
    demo_status(env, args, &open, &operator_log)
}

/// Waits until the charging Pipeline's worker pods run on the real node, and shows them.
fn wait_for_worker_pods(env: &Environment, kubectl: &Path, ns: &str) -> Result<(), Error> {
    let started = std::time::Instant::now();
    loop {
        let out = Command::new(kubectl)
            .args([
                "get", "pods", "-n", ns, "-l", "exactly.dev/pipeline=charging", "-o",
                "jsonpath={range .items[*]}{.spec.nodeName} {.status.containerStatuses[0].ready}{\"\\n\"}{end}",
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty()
            && lines
                .iter()
                .all(|l| *l == format!("{} true", exactly_testenv::node::NODE_NAME))
        {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            return Err(format!("the worker pods did not run on the real node: {text}").into());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    show(
        env,
        kubectl,
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "exactly.dev/pipeline=charging",
            "-o",
            "wide",
        ],
        None,
    )?;
    Ok(())
}

/// Without a real node: the worker as a process, with the configuration of its StatefulSet.
fn run_worker_process(env: &Environment, ns: &str, operator: &Path) -> Result<(), Error> {
    let kubectl = env.tools.kubectl.clone();
    step(
        "The charging Pipeline's worker: on this environment's kwok nodes no container runs, so the worker runs here as a process, with exactly the pipeline.json the operator rendered for its StatefulSet",
    );
    let config = show(
        env,
        &kubectl,
        &[
            "get",
            "secret",
            "charging-pipeline",
            "-n",
            ns,
            "-o",
            "go-template={{index .data \"pipeline.json\" | base64decode}}",
        ],
        None,
    )?;
    let config_path = env.dir.join("charging-pipeline.json");
    std::fs::write(&config_path, config)?;
    let mut worker = Command::new(operator.with_file_name("exactly-worker"));
    worker.arg("--config").arg(&config_path).args([
        "--ordinal",
        "0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "text",
    ]);
    let pid = env.run_process("worker", worker)?;
    println!(
        "exactly-worker (pid {pid}), log: {}",
        env.dir.join("logs/worker.log").display()
    );
    Ok(())
}

/// What a user looks at, then (without --once) the environment until Ctrl-C.
fn demo_status(
    env: &Environment,
    args: &Args,
    open: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    operator_log: &str,
) -> Result<(), Error> {
    let kubectl = env.tools.kubectl.clone();
    let ns = args.namespace.as_str();
    step("What a user looks at");
    show(
        env,
        &kubectl,
        &["get", "exactly", "-n", ns, "-o", "wide"],
        None,
    )?;
    show(
        env,
        &kubectl,
        &[
            "get",
            "topic",
            "orders",
            "-n",
            ns,
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status} ({.reason}) {.message}{\"\\n\"}{end}",
        ],
        None,
    )?;

    show(
        env,
        &kubectl,
        &[
            "get",
            "consumergroup",
            "billing",
            "-n",
            ns,
            "-o",
            "jsonpath=state={.status.state} totalLag={.status.totalLag} lastCommitSeen={.status.lastCommitSeen}{\"\\n\"}{range .status.partitions[*]}  {.topic}-{.partition}: committed={.committed} logEnd={.logEnd} lastStable={.lastStable} lag={.lag}{\"\\n\"}{end}",
        ],
        None,
    )?;
    show(
        env,
        &kubectl,
        &[
            "get",
            "producer",
            "orders-writer",
            "-n",
            ns,
            "-o",
            "jsonpath={range .status.transactions[*]}{.transactionalId}: {.state} producerId={.producerId} epoch={.producerEpoch} age={.ageSeconds}s partitions={.partitions}{\"\\n\"}{end}hanging={.status.hangingTransactions}{\"\\n\"}",
        ],
        None,
    )?;

    show(
        env,
        &kubectl,
        &[
            "get",
            "pipeline",
            "charging",
            "-n",
            ns,
            "-o",
            "jsonpath=workers={.status.workers} recordsIn={.status.recordsIn} recordsOut={.status.recordsOut} deadLettered={.status.deadLettered} totalLag={.status.totalLag} failedLinks={.status.failedLinks}{\"\\n\"}{range .status.conditions[*]}  {.type}={.status} ({.reason}) {.message}{\"\\n\"}{end}",
        ],
        None,
    )?;
    step(
        "The charges, read back with read_committed: one per committed order, none from the open transaction",
    );
    println!("  {} charges", count_committed(env, "charges")?);

    step("The same topic, as Kafka's own tools see it");
    let classpath = env.tools.kafka_classpath();
    show(
        env,
        Path::new("java"),
        &[
            "-cp",
            &classpath,
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            &env.bootstrap_servers,
            "--describe",
            "--topic",
            "orders",
        ],
        None,
    )?;

    if args.once {
        step("Done (--once): aborting the open transaction and stopping everything");
        rdkafka::producer::Producer::abort_transaction(open, std::time::Duration::from_secs(10))?;
        return Ok(());
    }
    step("Running. In another shell:");
    println!("{}", env.shell_exports());
    println!("kubectl get exactly -n {ns}\nOperator log: {operator_log}\nCtrl-C stops everything.");
    exactly_testenv::wait_for_stop_signal()?;
    step("Stopping");
    Ok(())
}

/// Records of `topic` a fresh read_committed consumer reads from the beginning.
fn count_committed(env: &Environment, topic: &str) -> Result<usize, Error> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", "demo-charges-check")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut count = 0;
    let mut idle = std::time::Instant::now();
    let started = std::time::Instant::now();
    // Read until nothing new arrives for 3 s (bounded at 30 s).
    while idle.elapsed() < std::time::Duration::from_secs(3)
        && started.elapsed() < std::time::Duration::from_secs(30)
    {
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(250)) {
            message?;
            count += 1;
            idle = std::time::Instant::now();
        }
    }
    Ok(count)
}

/// Writes orders through a transactional producer configured from the Producer's rendered
/// properties, and consumes part of them as the billing service would. Returns the producer,
/// with its last transaction still open.
fn workload(
    env: &Environment,
    properties: &str,
) -> Result<rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>, Error> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let timeout = std::time::Duration::from_secs(20);
    let mut config = ClientConfig::new();
    for line in properties.lines().map(str::trim) {
        if let Some((key, value)) = line.split_once('=')
            && !line.starts_with('#')
        {
            config.set(key.trim(), value.trim());
        }
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create()?;
    producer.init_transactions(timeout)?;
    for batch in 0..6 {
        producer.begin_transaction()?;
        for n in 0..10 {
            let key = format!("order-{}", batch * 10 + n);
            let payload = format!("{{\"order\":\"{key}\",\"amount\":{}}}", 10 + n);
            producer
                .send(BaseRecord::to("orders").key(&key).payload(&payload))
                .map_err(|(e, _)| e)?;
        }
        if batch < 5 {
            producer.commit_transaction(timeout)?;
            println!("  transaction {}: 10 orders committed", batch + 1);
        } else {
            producer.flush(timeout)?;
            println!("  transaction 6: 10 orders written, left open");
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", "billing")
        .set("client.id", "billing-demo")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&["orders"])?;
    let mut consumed = 0;
    let started = std::time::Instant::now();
    while consumed < 20 && started.elapsed() < timeout {
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(500)) {
            message?;
            consumed += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    println!("  billing consumed and committed {consumed} orders, then stopped");
    drop(consumer);
    Ok(producer)
}
