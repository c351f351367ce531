//! `make env`: starts the test environment in the foreground for a person, prints what to export
//! to use it with kubectl, helm and Kafka's tools, and stops it all on Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use exactly_testenv::{Environment, Options};

#[derive(Parser)]
#[command(
    about = "Run exactly's local environment (Kubernetes control plane, kwok, Kafka) until Ctrl-C"
)]
struct Args {
    /// Also write the shell exports to this file (for scripts: `. FILE`).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Keep the environment's directory (logs, data) after stopping.
    #[arg(long)]
    keep: bool,
    /// Do not install the operator's CRDs.
    #[arg(long)]
    no_crds: bool,
    /// Do not start the real node (containerd and kubelet running containers); kwok's fake
    /// nodes are there either way.
    #[arg(long)]
    no_real_node: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let options = Options {
        keep: args.keep || Options::default().keep,
        install_crds: !args.no_crds,
        real_node: !args.no_real_node && Options::default().real_node,
        ..Options::default()
    };
    let env = Environment::start(options)?;
    if env.has_real_node() {
        env.real_node()?;
    }
    let exports = env.shell_exports();
    if let Some(path) = &args.env_file {
        std::fs::write(path, &exports)?;
    }
    println!("\nThe environment is up. In another shell:\n\n{exports}");
    println!("kubectl get nodes");
    println!(
        "java -cp \"$KAFKA_CLASSPATH\" org.apache.kafka.tools.TopicCommand --bootstrap-server $KAFKA_BOOTSTRAP_SERVERS --list"
    );
    println!(
        "\nLogs: {}/logs. Ctrl-C stops everything.",
        env.dir.display()
    );

    exactly_testenv::wait_for_stop_signal()?;
    eprintln!("stopping...");
    env.shutdown();
    if let Some(path) = &args.env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
