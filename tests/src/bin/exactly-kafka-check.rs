//! A Kafka client for tests that must run where pods run (inside the real node's network and
//! mount namespaces, so brokers' advertised Service names resolve): a transactional producer
//! configured from a rendered client properties file, and an independent read_committed count.
//!
//!   exactly-kafka-check produce --properties FILE --topic T --records N [--per-transaction K]
//!   exactly-kafka-check count --properties FILE --topic T --records N --group G [--timeout-secs S]
//!
//! Each prints one JSON line with what it did; the test asserts on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes records `{"id": n}` keyed `k<n>`, n in 0..records, in transactions; a transaction
    /// that fails is aborted (or its producer replaced, when fatal) and its records sent again.
    Produce {
        #[arg(long)]
        properties: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        per_transaction: u64,
    },
    /// Reads `topic` from the beginning with read_committed until every id is seen and nothing
    /// new arrives for 5 s (or the timeout), and counts lost and duplicated ids.
    Count {
        #[arg(long)]
        properties: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        records: u64,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

type Error = Box<dyn std::error::Error>;

fn properties(path: &PathBuf) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Error> {
    match args.command {
        Command::Produce {
            properties: path,
            topic,
            records,
            per_transaction,
        } => produce(&properties(&path)?, &topic, records, per_transaction.max(1)),
        Command::Count {
            properties: path,
            topic,
            records,
            group,
            timeout_secs,
        } => count(
            &properties(&path)?,
            &topic,
            records,
            &group,
            Duration::from_secs(timeout_secs),
        ),
    }
}

fn new_producer(
    props: &BTreeMap<String, String>,
) -> Result<ThreadedProducer<DefaultProducerContext>, Error> {
    let mut config = ClientConfig::new();
    for (k, v) in props {
        config.set(k, v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create()?;
    producer.init_transactions(Duration::from_secs(60))?;
    Ok(producer)
}

fn produce(
    props: &BTreeMap<String, String>,
    topic: &str,
    records: u64,
    per_transaction: u64,
) -> Result<(), Error> {
    let timeout = Duration::from_secs(60);
    let mut producer = new_producer(props)?;
    let (mut aborted, mut replaced, mut committed) = (0u64, 0u64, 0u64);
    let mut start = 0;
    while start < records {
        let end = (start + per_transaction).min(records);
        let attempt = (|| -> Result<(), KafkaError> {
            producer.begin_transaction()?;
            for id in start..end {
                let key = format!("k{id}");
                let payload = format!("{{\"id\":{id}}}");
                let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((
                            KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull,
                            ),
                            r,
                        )) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(e),
                    }
                }
            }
            producer.commit_transaction(timeout)
        })();
        match attempt {
            Ok(()) => {
                committed += end - start;
                start = end;
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal())
                    || producer.abort_transaction(timeout).is_err();
                if fatal {
                    replaced += 1;
                    eprintln!(
                        "transaction {start}..{end} failed fatally ({e}); a new producer fences the old"
                    );
                    std::thread::sleep(Duration::from_secs(1));
                    producer = new_producer(props)?;
                } else {
                    aborted += 1;
                    eprintln!("transaction {start}..{end} aborted ({e}); sending it again");
                }
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({"committed": committed, "aborted": aborted, "producersReplaced": replaced})
    );
    Ok(())
}

fn count(
    props: &BTreeMap<String, String>,
    topic: &str,
    records: u64,
    group: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let mut config = ClientConfig::new();
    for key in [
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "ssl.ca.pem",
        "ssl.ca.location",
    ] {
        if let Some(v) = props.get(key) {
            config.set(key, v);
        }
    }
    let consumer: BaseConsumer = config
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut read = 0u64;
    let started = Instant::now();
    let mut last_new = Instant::now();
    while started.elapsed() < timeout {
        if seen.len() as u64 >= records && last_new.elapsed() > Duration::from_secs(5) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                read += 1;
                last_new = Instant::now();
                let id = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                    .and_then(|v| v["id"].as_u64());
                match id {
                    Some(id) => *seen.entry(id).or_default() += 1,
                    None => eprintln!("a record without an id at offset {}", message.offset()),
                }
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    let lost = (0..records).filter(|id| !seen.contains_key(id)).count();
    let duplicated: u64 = seen.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected = seen.keys().filter(|id| **id >= records).count();
    println!(
        "{}",
        serde_json::json!({"read": read, "distinct": seen.len(), "lost": lost, "duplicated": duplicated, "unexpected": unexpected})
    );
    Ok(())
}
