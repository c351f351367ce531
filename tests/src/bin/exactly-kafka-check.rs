//! A Kafka client for tests that must run where pods run (inside the real node's network and
//! mount namespaces, so brokers' advertised Service names resolve): a transactional producer
//! configured from a rendered client properties file, and an independent read_committed count.
//!
//!   exactly-kafka-check produce --properties FILE --topic T --records N [--from ID]
//!                               [--per-transaction K] [--until FILE] [--pause-ms MS]
//!   exactly-kafka-check count --properties FILE --topic T (--records N | --records-file F)
//!                             --group G [--timeout-secs S]
//!
//! Each prints one JSON line with what it did; the test asserts on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connects and asks for the cluster's metadata; prints whether that worked and, if not,
    /// the client's error (exits 0 either way: the caller judges).
    Connect {
        #[arg(long)]
        properties: PathBuf,
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
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
        /// Stop early, after the transaction in flight, once this file exists (the count then
        /// reports how many were committed: ids 0..committed).
        #[arg(long)]
        until: Option<PathBuf>,
        /// The first id (ids run from..from+records).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Pause between transactions.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
    /// Reads `topic` from the beginning with read_committed until every id is seen and nothing
    /// new arrives for 5 s (or the timeout), and counts lost and duplicated ids.
    Count {
        #[arg(long)]
        properties: PathBuf,
        #[arg(long)]
        topic: String,
        /// The ids expected: 0..records.
        #[arg(long, required_unless_present = "records_file")]
        records: Option<u64>,
        /// Read while this file does not exist yet, then take the expected count from it: a
        /// consumer that runs alongside a producer whose total is known only at its end.
        #[arg(long, conflicts_with = "records")]
        records_file: Option<PathBuf>,
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
        Command::Connect {
            properties: path,
            timeout_secs,
        } => connect(&properties(&path)?, Duration::from_secs(timeout_secs)),
        Command::Produce {
            properties: path,
            topic,
            records,
            per_transaction,
            until,
            from,
            pause_ms,
        } => produce(
            &properties(&path)?,
            &topic,
            from..from.saturating_add(records),
            per_transaction.max(1),
            until.as_deref(),
            Duration::from_millis(pause_ms),
        ),
        Command::Count {
            properties: path,
            topic,
            records,
            records_file,
            group,
            timeout_secs,
        } => count(
            &properties(&path)?,
            &topic,
            Expected {
                records,
                file: records_file,
            },
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
    ids: std::ops::Range<u64>,
    per_transaction: u64,
    until: Option<&std::path::Path>,
    pause: Duration,
) -> Result<(), Error> {
    let timeout = Duration::from_secs(60);
    let mut producer = new_producer(props)?;
    let (mut aborted, mut replaced, mut committed) = (0u64, 0u64, 0u64);
    let mut start = ids.start;
    while start < ids.end && !until.is_some_and(|f| f.exists()) {
        std::thread::sleep(pause);
        let end = (start + per_transaction).min(ids.end);
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
            // A retriable commit error leaves the outcome open: commit again, never abort and
            // resend (the first commit may have landed).
            let mut tries = 0;
            loop {
                match producer.commit_transaction(timeout) {
                    Err(KafkaError::Transaction(t)) if t.is_retriable() && tries < 10 => {
                        tries += 1;
                        eprintln!("commit of {start}..{end} retried ({t})");
                    }
                    result => return result,
                }
            }
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

/// How many records the count expects: given, or written to a file later.
struct Expected {
    records: Option<u64>,
    file: Option<PathBuf>,
}

impl Expected {
    fn known(&mut self) -> Option<u64> {
        if self.records.is_none()
            && let Some(file) = &self.file
        {
            self.records = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse().ok());
        }
        self.records
    }
}

/// The client settings a reader or a metadata check takes from rendered properties.
const CONNECTION_KEYS: [&str; 7] = [
    "bootstrap.servers",
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.ca.location",
];

/// A client context that keeps the last error librdkafka reported (a failed login shows up
/// there, not in the request that timed out).
#[derive(Default)]
struct LastError(std::sync::Mutex<String>);

impl rdkafka::ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            *last = format!("{error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

fn connect(props: &BTreeMap<String, String>, timeout: Duration) -> Result<(), Error> {
    let mut config = ClientConfig::new();
    for key in CONNECTION_KEYS {
        if let Some(v) = props.get(key) {
            config.set(key, v);
        }
    }
    let consumer: BaseConsumer<LastError> = config.create_with_context(LastError::default())?;
    let result = match consumer.fetch_metadata(None, timeout) {
        Ok(m) => serde_json::json!({"ok": true, "brokers": m.brokers().len()}),
        Err(e) => {
            // Errors reach the context as events, served by polling.
            for _ in 0..10 {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let last = consumer
                .context()
                .0
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            serde_json::json!({"ok": false, "error": format!("{e}; last client error: {last}")})
        }
    };
    println!("{result}");
    Ok(())
}

fn count(
    props: &BTreeMap<String, String>,
    topic: &str,
    mut expected: Expected,
    group: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let mut config = ClientConfig::new();
    for key in CONNECTION_KEYS {
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
    // Every partition assigned from the beginning, outside any group's rebalances: a
    // coordinator moving while brokers roll would otherwise restart an uncommitted consumer
    // from the beginning and count its records twice.
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if assignment.count() == 0 {
        return Err(format!("topic {topic} has no partitions").into());
    }
    consumer.assign(&assignment)?;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut read = 0u64;
    let started = Instant::now();
    let mut last_new = Instant::now();
    while started.elapsed() < timeout {
        if expected
            .known()
            .is_some_and(|n| seen.len() as u64 >= n && last_new.elapsed() > Duration::from_secs(5))
        {
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
    let Some(records) = expected.known() else {
        return Err(format!("no record count was written within {timeout:?}").into());
    };
    let lost = (0..records).filter(|id| !seen.contains_key(id)).count();
    let duplicated: u64 = seen.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected = seen.keys().filter(|id| **id >= records).count();
    println!(
        "{}",
        serde_json::json!({"read": read, "distinct": seen.len(), "lost": lost, "duplicated": duplicated, "unexpected": unexpected})
    );
    Ok(())
}
