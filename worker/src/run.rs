//! The transaction loop: KIP-447 consume-transform-produce.
//!
//! [`PRODUCERS`] transactional producers taking turns (`transactional.id = <prefix>-<ordinal>`,
//! then `<prefix>-<ordinal>.<k>`) and one consumer in the Pipeline's group (`read_committed`, no
//! auto-commit, cooperative-sticky assignment). The loop:
//!
//! 1. poll a record; begin a transaction lazily on the first record after a commit;
//! 2. transform it, route every output, produce them (or a dead letter) into the transaction;
//! 3. every `commitIntervalMs`, or after `commitMaxRecords` input records, wait until the
//!    broker has every output of the transaction, then hand it to a committer thread, which
//!    sends the consumed positions, each with its [`Progress`] metadata, to the transaction with
//!    the consumer's group metadata (so a zombie of an older generation is fenced), and commits;
//!    meanwhile the loop goes on with the next transaction on the other producer;
//! 4. before the next commit, an abort or a rebalance, wait for the handed-over commit. If it
//!    failed, the transaction opened since is aborted too (its offsets would pass records that
//!    were not committed), and every partition is rewound to where the failed one began.
//!
//! Outputs stay in input order: a transaction's records are all in the log before the next
//! transaction's first is sent. And no commit passes one that may still fail: a transaction
//! commits only after the one before it has.
//!
//! On an abortable error the transaction is aborted and every partition it consumed is sought
//! back to the first offset it consumed, so the records are processed again; retriable errors are
//! retried; fenced or fatal errors end the process (see [`crate::decide`] for the exit codes).
//! The consumer's rebalance callbacks share the producer and the ledger with the loop: on
//! revocation the open transaction commits before the partitions go, when the assignment is lost
//! it is aborted, and newly assigned partitions' committed metadata is read so their figures
//! count on. The loop runs on its own thread: every librdkafka call here blocks.
//!
//! Under `guarantee: AtLeastOnce` (not exactly-once) the same loop runs without transactions:
//! the producer is idempotent but has no `transactional.id`; "begin" only marks the start of a
//! batch; "commit" flushes the producer, checks that no record sent since the batch began failed
//! delivery, and commits the consumed positions (with the same metadata) with the consumer,
//! synchronously; "abort" only rewinds the consumer, and what the batch produced stays: those
//! records are produced again (duplicates, never loss).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::config::{Guarantee, WorkerConfig};
use crate::decide::{
    self, Decision, ExitReason, KafkaErrorFacts, OffsetCommitFailure, RebalanceAction,
    RecordErrorAction, StopReason, TxnOperation,
};
use crate::http::Health;
use crate::ledger::{Ledger, OffsetToCommit, Rewind, TopicPartition};
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::route::Router;
use crate::transform::{InputRecord, OutputRecord, RecordError, Transform};

/// How long a blocking broker request (committed offsets, seek) may take before it counts as
/// failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest poll while no transaction is open: bounds how late a shutdown is noticed.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Longest poll while a commit is in flight: a finished commit is settled soon even when no
/// record comes (a failed one must be aborted: its transaction holds the outputs' last stable
/// offset).
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// How often the progress line is logged (only when something was committed since).
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Consumer errors (broker unreachable, ...) are logged at most this often.
const CONSUMER_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The consumer's `fetch.queue.backoff.ms` unless `clientProperties` sets it (see
/// [`consumer_config`]).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// What the worker needs besides its configuration.
pub struct Runtime {
    /// The StatefulSet ordinal: the `transactional.id` suffix.
    pub ordinal: u32,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
    /// Set by the signal handler: commit, leave the group, return.
    pub shutdown: Arc<AtomicBool>,
}

/// The `transactional.id` of worker `ordinal` (its first producer's; also its consumer's
/// `group.instance.id`).
pub fn transactional_id(cfg: &WorkerConfig, ordinal: u32) -> String {
    format!("{}-{ordinal}", cfg.transactional_id_prefix)
}

/// How many transactional producers an exactly-once worker runs: they take turns, one
/// transaction each (see [`producer_transactional_id`]), and one's commit runs while the other's
/// transaction fills.
pub const PRODUCERS: usize = 2;

/// The `transactional.id` of producer `index` (below [`PRODUCERS`]) of worker `ordinal`:
/// `<prefix>-<ordinal>` for the first, `<prefix>-<ordinal>.<index>` for the others.
///
/// Why two: a commit (the offsets sent, then EndTxn) takes a few round trips to the
/// coordinators, and with one producer the loop waits for them; with two, the next transaction
/// fills meanwhile. And after a commit the coordinator writes the markers to every partition of
/// the transaction; until it has, the same transactional id cannot add partitions to its next
/// transaction (CONCURRENT_TRANSACTIONS, retried by librdkafka every 20 ms). The other id's
/// transaction starts at once.
pub fn producer_transactional_id(cfg: &WorkerConfig, ordinal: u32, index: usize) -> String {
    match index {
        0 => transactional_id(cfg, ordinal),
        n => format!("{}-{ordinal}.{n}", cfg.transactional_id_prefix),
    }
}

/// The producer's configuration: `clientProperties` first, the exactly-once settings on top
/// (under `AtLeastOnce`: idempotent, but no `transactional.id` and no transaction timeout).
pub fn producer_config(cfg: &WorkerConfig, ordinal: u32, index: usize) -> ClientConfig {
    let mut config = client_config(cfg);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5");
    if cfg.guarantee.transactional() {
        config
            .set(
                "transactional.id",
                producer_transactional_id(cfg, ordinal, index),
            )
            .set(
                "transaction.timeout.ms",
                cfg.transaction_timeout_ms.to_string(),
            );
    }
    if !cfg.client_properties.contains_key("client.id") {
        let suffix = if index == 0 {
            String::new()
        } else {
            format!("-{index}")
        };
        config.set(
            "client.id",
            format!("exactly-worker-{ordinal}-producer{suffix}"),
        );
    }
    config
}

/// The consumer's configuration: `clientProperties` first, the exactly-once settings on top.
pub fn consumer_config(cfg: &WorkerConfig, ordinal: u32) -> ClientConfig {
    let mut config = client_config(cfg);
    config
        .set("group.id", &cfg.group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", cfg.start_from.auto_offset_reset())
        .set("enable.partition.eof", "false")
        // Static membership: worker <n> keeps its identity across restarts (a StatefulSet pod's
        // ordinal), so a restarted worker takes its partitions back at once instead of the
        // group waiting for the dead member's session to time out and rebalancing twice.
        .set("group.instance.id", transactional_id(cfg, ordinal));
    if !cfg.client_properties.contains_key("client.id") {
        config.set("client.id", format!("exactly-worker-{ordinal}-consumer"));
    }
    // A worker that is gone for good (scale-down, a node lost) gives its partitions up after
    // this long; tunable through clientProperties.
    if !cfg.client_properties.contains_key("session.timeout.ms") {
        config.set("session.timeout.ms", "15000");
    }
    // librdkafka stops fetching once its queue holds `queued.min.messages` (or the byte limit)
    // and looks again only after this backoff, 1 s by default: a worker faster than that drains
    // the queue and then stands idle for most of a second (seen as 400 ms stalls every ~90 000
    // records in the benchmark). A short backoff keeps the queue fed.
    if !cfg.client_properties.contains_key("fetch.queue.backoff.ms") {
        config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    }
    config
}

fn client_config(cfg: &WorkerConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in &cfg.client_properties {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &cfg.bootstrap_servers)
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// Runs the worker until shutdown (`Ok`) or an error it cannot go on from.
pub fn run(cfg: WorkerConfig, runtime: Runtime) -> Result<(), ExitReason> {
    let transform = Transform::compile(&cfg.transform).map_err(|e| {
        error!(error = %e, "the transform does not compile");
        ExitReason::Config
    })?;
    let router = Router::new(&cfg.output);
    let count = if cfg.guarantee.transactional() {
        PRODUCERS
    } else {
        1
    };
    let producers = (0..count)
        .map(|index| {
            producer_config(&cfg, runtime.ordinal, index)
                .create_with_context(ProducerLog::default())
                .map_err(|e| {
                    error!(error = %e, "cannot create the producer");
                    ExitReason::Config
                })
        })
        .collect::<Result<Vec<ThreadedProducer<ProducerLog>>, _>>()?;
    let timeout = Duration::from_millis(u64::from(cfg.transaction_timeout_ms));
    match cfg.guarantee {
        Guarantee::ExactlyOnce => {
            // Each fences any older instance with its transactional.id and aborts what it left
            // open; side by side, as each waits for the coordinator.
            let probe_topic = cfg.output.topics.values().next().map(String::as_str);
            std::thread::scope(|scope| {
                let inits: Vec<_> = producers
                    .iter()
                    .map(|producer| {
                        scope.spawn(move || {
                            await_broker(producer, probe_topic);
                            init_transactions(producer, timeout)
                        })
                    })
                    .collect();
                inits
                    .into_iter()
                    .try_for_each(|init| init.join().unwrap_or(Err(ExitReason::Fatal)))
            })?;
            let ids: Vec<String> = (0..count)
                .map(|i| producer_transactional_id(&cfg, runtime.ordinal, i))
                .collect();
            info!(transactional_ids = ?ids, "transactions initialised");
        }
        Guarantee::AtLeastOnce => warn!(
            "guarantee AtLeastOnce: no transactions; after a crash or a failed commit the \
             records since the last commit are produced again (duplicates), and readers see \
             outputs before their offsets commit. This is not exactly-once"
        ),
    }

    let consumer_cfg = consumer_config(&cfg, runtime.ordinal);
    let topics: Vec<&str> = cfg.input_topics.iter().map(String::as_str).collect();
    let pipeline = Pipeline {
        producers: Arc::new(producers),
        transform,
        router,
        timeout,
        metrics: runtime.metrics,
        health: runtime.health,
        state: Mutex::new(State::default()),
        cfg: cfg.clone(),
    };
    let consumer: BaseConsumer<Pipeline> =
        consumer_cfg.create_with_context(pipeline).map_err(|e| {
            error!(error = %e, "cannot create the consumer");
            ExitReason::Config
        })?;
    consumer.subscribe(&topics).map_err(|e| {
        error!(error = %e, "cannot subscribe to the input topics");
        ExitReason::Config
    })?;
    info!(
        pipeline = %cfg.pipeline,
        group = %cfg.group_id,
        topics = ?cfg.input_topics,
        "consuming"
    );
    let result = consume(&consumer, &runtime.shutdown);
    let (committed, aborted) = {
        let pipeline = consumer.context();
        let state = pipeline.lock();
        (
            pipeline.metrics.transactions_committed.get(),
            state.aborted_since_start,
        )
    };
    // Dropping the consumer closes it: it leaves the group, and the revoke callback finds no
    // open transaction.
    drop(consumer);
    if result.is_ok() {
        info!(
            transactions_committed = committed,
            transactions_aborted = aborted,
            "left the consumer group; stopped"
        );
    }
    result
}

fn consume(consumer: &BaseConsumer<Pipeline>, shutdown: &AtomicBool) -> Result<(), ExitReason> {
    let pipeline = consumer.context();
    let mut last_progress_log = Instant::now();
    let mut logged = Progress::default();
    let mut last_consumer_error: Option<Instant> = None;
    loop {
        let poll_timeout = {
            let mut state = pipeline.lock();
            if let Some(exit) = state.exit {
                pipeline.settle(&mut state, consumer, None);
                return Err(exit);
            }
            if shutdown.load(Ordering::Relaxed) {
                pipeline.finish(&mut state, consumer);
                return state.exit.map_or(Ok(()), Err);
            }
            pipeline.read_unknown_progress(&mut state, consumer);
            if state.pending.as_ref().is_some_and(Pending::is_done) {
                pipeline.settle(&mut state, consumer, None);
            }
            if let Some(started) = state.txn
                && decide::should_commit(
                    state.ledger.records_in_txn(),
                    started.elapsed(),
                    &pipeline.cfg,
                )
            {
                pipeline.commit_with(&mut state, consumer, "interval", true);
            }
            let timeout = match state.txn {
                Some(started) => pipeline
                    .commit_interval()
                    .saturating_sub(started.elapsed())
                    .clamp(Duration::from_millis(1), IDLE_POLL),
                None => IDLE_POLL,
            };
            if state.pending.is_some() {
                timeout.min(SETTLE_POLL)
            } else {
                timeout
            }
        };
        match consumer.poll(poll_timeout) {
            None => {}
            Some(Ok(message)) => {
                let mut state = pipeline.lock();
                pipeline.process(&mut state, consumer, &message);
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                error!(error = %code, "fatal consumer error");
                return Err(ExitReason::Fatal);
            }
            Some(Err(e)) => {
                // Usually a broker that is away; librdkafka reconnects by itself.
                if last_consumer_error.is_none_or(|t| t.elapsed() >= CONSUMER_ERROR_LOG_INTERVAL) {
                    warn!(error = %e, "consumer error");
                    last_consumer_error = Some(Instant::now());
                } else {
                    debug!(error = %e, "consumer error");
                }
            }
        }
        if last_progress_log.elapsed() >= PROGRESS_LOG_INTERVAL {
            last_progress_log = Instant::now();
            let now = pipeline.metrics_snapshot();
            if now != logged {
                info!(
                    records_in = now.in_records - logged.in_records,
                    records_out = now.out_records - logged.out_records,
                    dead_lettered = now.dead_lettered - logged.dead_lettered,
                    transactions = now.transactions - logged.transactions,
                    records_in_since_start = now.in_records,
                    "progress in the last {}s",
                    PROGRESS_LOG_INTERVAL.as_secs()
                );
                logged = now;
            }
        }
    }
}

/// How often [`drain`] looks whether the producer has delivered everything.
const DRAIN_STEP: Duration = Duration::from_millis(1);

/// Waits until every record handed to the producer is delivered (or failed) and its delivery
/// report served, as `flush` does, but without its 100 ms steps.
///
/// rdkafka's `flush` (which its `commit_transaction` calls first) waits in `poll` slices of
/// 100 ms that never end early, while the `ThreadedProducer`'s own thread serves the delivery
/// reports: every flush, so every transaction, took at least 100 ms however soon the broker
/// acknowledged. Here librdkafka's own flush is asked with no wait (which also sends what is
/// lingering at once) every millisecond; once it says nothing is left, the flush inside
/// `commit_transaction` returns at once.
fn drain(producer: &ThreadedProducer<ProducerLog>, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        match producer.flush(Duration::ZERO) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(DRAIN_STEP);
            }
            result => return result,
        }
    }
}

/// The loop's mutable state, shared with the rebalance callbacks (which run inside `poll`, on
/// the loop's thread, never while the loop holds the lock).
#[derive(Default)]
struct State {
    ledger: Ledger,
    /// When the open transaction (under `AtLeastOnce`, the batch) began; `None` when none is
    /// open.
    txn: Option<Instant>,
    /// `AtLeastOnce`: the producer's failed deliveries when the batch began.
    failed_deliveries_at_begin: u64,
    /// Set when the worker cannot go on; the loop returns it.
    exit: Option<ExitReason>,
    /// Set by the `Stop` policy.
    stopped: Option<StopReason>,
    /// Transactions this process aborted (logged when it stops).
    aborted_since_start: u64,
    /// The producer whose turn it is: the open transaction's, or the next one's.
    turn: usize,
    /// Records one of whose later outputs Kafka refused (too large, ...) after earlier ones were
    /// produced: the transaction was aborted, and when the replay reaches them they are record
    /// errors instead. Several can be pending: the replay may meet them in another order.
    poisoned: BTreeMap<(TopicPartition, i64), RecordError>,
    /// The transaction whose commit runs on the committer thread (never on the producer whose
    /// turn it is).
    pending: Option<Pending>,
}

/// A transaction handed to the committer thread. The ledger already counts it as committed.
struct Pending {
    /// Index of its producer.
    producer: usize,
    commit: Handed,
    /// The ledger before it counted this transaction as committed: put back, and rewound, if the
    /// commit fails.
    before: Ledger,
    offsets: Vec<OffsetToCommit>,
    /// What it adds to the figures.
    added: Progress,
    why: &'static str,
}

impl Pending {
    /// Whether its commit has ended (settling it will not wait).
    fn is_done(&self) -> bool {
        match &self.commit {
            Handed::Running(running) => running.is_finished(),
            Handed::Done(_) => true,
        }
    }
}

/// A commit running on the committer thread, or already done on the loop's.
enum Handed {
    Running(JoinHandle<CommitOutcome>),
    Done(CommitOutcome),
}

/// How a commit ended.
struct CommitOutcome {
    result: Result<(), CommitFailure>,
    /// From the commit's start (on the loop, before the drain) to its end.
    took: Duration,
}

/// A transactional call that failed for good.
struct CommitFailure {
    /// `send_offsets` or `commit`.
    step: &'static str,
    error: KafkaError,
    decision: Decision,
}

/// The consumer's context: everything the loop and the rebalance callbacks share.
struct Pipeline {
    cfg: WorkerConfig,
    /// One producer under `AtLeastOnce`; [`PRODUCERS`] taking turns under `ExactlyOnce` (shared
    /// with the committer thread).
    producers: Arc<Vec<ThreadedProducer<ProducerLog>>>,
    transform: Transform,
    router: Router,
    /// Bound of every blocking transactional call (the transaction timeout).
    timeout: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    state: Mutex<State>,
}

/// Why producing one record failed.
enum ProduceFailure {
    /// Kafka refused this record itself (too large, ...).
    Record(String),
    /// The transaction or the producer is in trouble.
    Kafka(KafkaError),
}

impl Pipeline {
    /// The producer of the open (or next) transaction.
    fn producer(&self, state: &State) -> &ThreadedProducer<ProducerLog> {
        &self.producers[state.turn % self.producers.len()]
    }

    /// The next transaction goes to the next producer.
    fn next_turn(&self, state: &mut State) {
        state.turn = (state.turn + 1) % self.producers.len();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated in a way that matters more than
        // stopping would; keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.commit_interval_ms))
    }

    fn metrics_snapshot(&self) -> Progress {
        Progress {
            in_records: self.metrics.records_in.get(),
            out_records: self.metrics.records_out.get(),
            dead_lettered: self.metrics.dead_lettered.get(),
            transactions: self.metrics.transactions_committed.get(),
            ..Progress::default()
        }
    }

    /// Transforms, routes and produces one record into the open transaction.
    fn process(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        message: &BorrowedMessage<'_>,
    ) {
        if state.stopped.is_some() || state.exit.is_some() {
            // Paused partitions may still hand over what was fetched before the pause; it is
            // not processed and its offset is not committed.
            return;
        }
        let tp: TopicPartition = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        if !state.ledger.knows_progress(&tp) && !self.read_progress(state, consumer, &tp) {
            // Without the committed figures a commit would overwrite them; come back later.
            self.seek(state, consumer, &tp.0, tp.1, offset);
            std::thread::sleep(decide::retry_backoff(0));
            return;
        }
        let record = match input_record(message) {
            Ok(record) => record,
            Err(why) => {
                let record = InputRecord {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset,
                    timestamp: message.timestamp().to_millis(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: Vec::new(),
                };
                self.record_failed(state, consumer, &record, RecordError::new(why));
                return;
            }
        };
        if state.txn.is_none() && !self.begin(state) {
            return;
        }
        // Kept until committed: an abort later in this transaction replays the record again.
        if let Some(e) = state.poisoned.get(&(tp.clone(), offset)).cloned() {
            self.record_failed(state, consumer, &record, e);
            return;
        }
        let routed = self.transform.apply(&record).and_then(|outputs| {
            outputs
                .into_iter()
                .map(|out| {
                    let topic = self.router.resolve(&out)?.to_string();
                    Ok((topic, out))
                })
                .collect::<Result<Vec<_>, RecordError>>()
        });
        let outputs = match routed {
            Ok(outputs) => outputs,
            Err(e) => {
                self.record_failed(state, consumer, &record, e);
                return;
            }
        };
        for (i, (topic, out)) in outputs.iter().enumerate() {
            match self.produce(state, topic, out) {
                Ok(()) => {}
                Err(ProduceFailure::Record(why)) if i == 0 => {
                    // Nothing of this record is in the transaction yet: a plain record error.
                    self.record_failed(state, consumer, &record, RecordError::new(why));
                    return;
                }
                Err(ProduceFailure::Record(why)) => {
                    // Earlier outputs of this record are in the transaction: abort it, and let
                    // the replay treat the record as a record error before producing anything.
                    warn!(
                        record = %format!("{}-{}@{}", tp.0, tp.1, offset),
                        error = %why,
                        "Kafka refused an output record; aborting to handle it as a record error"
                    );
                    state
                        .poisoned
                        .insert((tp.clone(), offset), RecordError::new(why));
                    self.abort(state, consumer, "produce", Some((&tp, offset)));
                    return;
                }
                Err(ProduceFailure::Kafka(e)) => {
                    self.on_txn_error(
                        state,
                        consumer,
                        TxnOperation::Produce,
                        &e,
                        Some((&tp, offset)),
                    );
                    return;
                }
            }
        }
        state.ledger.consumed(&tp, offset, outputs.len() as u64, 0);
    }

    /// A record error under the configured policy.
    fn record_failed(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        record: &InputRecord,
        error: RecordError,
    ) {
        self.metrics.record_errors.inc();
        let tp: TopicPartition = (record.topic.clone(), record.partition);
        match decide::on_record_error(&self.cfg.error_policy, record, &error) {
            RecordErrorAction::DeadLetter {
                topic,
                record: dead_letter,
            } => {
                if state.txn.is_none() && !self.begin(state) {
                    return;
                }
                debug!(
                    record = %format!("{}-{}@{}", record.topic, record.partition, record.offset),
                    error = %error,
                    "dead-lettering"
                );
                match self.produce(state, &topic, &dead_letter) {
                    Ok(()) => state.ledger.consumed(&tp, record.offset, 0, 1),
                    Err(ProduceFailure::Record(why)) => {
                        let reason = StopReason {
                            topic: record.topic.clone(),
                            partition: record.partition,
                            offset: record.offset,
                            message: format!("{error}; and the dead letter was refused: {why}"),
                        };
                        self.stop(state, consumer, reason);
                    }
                    Err(ProduceFailure::Kafka(e)) => self.on_txn_error(
                        state,
                        consumer,
                        TxnOperation::Produce,
                        &e,
                        Some((&tp, record.offset)),
                    ),
                }
            }
            RecordErrorAction::Stop(reason) => self.stop(state, consumer, reason),
        }
    }

    /// The `Stop` policy: commit what came before the record (its own offset is never
    /// committed), pause everything, stay up and say where and why.
    ///
    /// The commit that stops carries the stop marker in the metadata of the failed record's
    /// partition, committed at the failed record's offset (in the same transaction as the
    /// records before it), so the operator, which cannot reach the worker, can name the record
    /// and the reason. If that commit fails, the transaction is aborted and rewound as any other:
    /// the replay meets the record again and stops again.
    fn stop(&self, state: &mut State, consumer: &BaseConsumer<Pipeline>, reason: StopReason) {
        error!(
            record = %format!("{}-{}@{}", reason.topic, reason.partition, reason.offset),
            error = %reason.message,
            "stopping the pipeline at this record (errorPolicy Stop); fix the record or the \
             Pipeline, then restart the workers"
        );
        // No output of the failed record is in the transaction (record errors strike before the
        // first produce), so what it holds is complete records: commit them, and the partition's
        // committed position is the failed record, with the marker saying why.
        if state.txn.is_none() && !self.begin(state) {
            return;
        }
        let tp: TopicPartition = (reason.topic.clone(), reason.partition);
        state.ledger.stop_at(&tp, reason.offset, reason.marker());
        if !self.commit(state, consumer, "stop") {
            if state.exit.is_none() {
                warn!("the commit that stops the pipeline failed; replaying from the last commit");
            }
            return;
        }
        self.seek(
            state,
            consumer,
            &reason.topic,
            reason.partition,
            reason.offset,
        );
        if let Ok(assignment) = consumer.assignment()
            && let Err(e) = consumer.pause(&assignment)
        {
            warn!(error = %e, "cannot pause the assigned partitions");
        }
        self.metrics.stopped.set(1);
        self.health.set_stopped(reason.clone());
        state.stopped = Some(reason);
    }

    fn begin(&self, state: &mut State) -> bool {
        if !self.cfg.guarantee.transactional() {
            state.txn = Some(Instant::now());
            state.failed_deliveries_at_begin = self.failed_deliveries();
            return true;
        }
        debug_assert!(
            state
                .pending
                .as_ref()
                .is_none_or(|p| p.producer != state.turn % self.producers.len()),
            "a transaction begins on a producer whose commit is in flight"
        );
        match self.producer(state).begin_transaction() {
            Ok(()) => {
                state.txn = Some(Instant::now());
                true
            }
            Err(e) => {
                let decision = decide::on_kafka_error(TxnOperation::Begin, self.facts(&e), 0);
                error!(error = %e, ?decision, "cannot begin a transaction");
                state.exit = Some(self.exit_reason(decision));
                false
            }
        }
    }

    fn produce(
        &self,
        state: &State,
        topic: &str,
        out: &OutputRecord,
    ) -> Result<(), ProduceFailure> {
        let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
        for (key, value) in &out.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &out.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &out.value {
            record = record.payload(value.as_slice());
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.producer(state).send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if Instant::now() < deadline =>
                {
                    // The producer's own thread drains the queue as brokers acknowledge.
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((KafkaError::MessageProduction(code), _))
                    if matches!(
                        code,
                        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord
                    ) =>
                {
                    return Err(ProduceFailure::Record(format!(
                        "Kafka refused the output record for {topic}: {code}"
                    )));
                }
                Err((e, _)) => return Err(ProduceFailure::Kafka(e)),
            }
        }
    }

    /// Commits the open transaction and waits for the commit; true when it committed (false:
    /// nothing was open, or it was aborted and rewound, or the worker exits).
    fn commit(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        why: &'static str,
    ) -> bool {
        self.commit_with(state, consumer, why, false)
    }

    /// Sends the consumed positions with their progress metadata and commits. With `overlap`
    /// and more than one producer, the commit runs on the committer thread and this returns
    /// once it is handed over (true); [`Pipeline::settle`] waits for it.
    fn commit_with(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        why: &'static str,
        overlap: bool,
    ) -> bool {
        if !self.settle(state, consumer, None) || state.txn.is_none() {
            return false;
        }
        let offsets = state.ledger.offsets_to_commit();
        let started = Instant::now();
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for o in &offsets {
            match tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset)) {
                Ok(()) => {
                    if let Some(mut elem) = tpl.find_partition(&o.topic, o.partition) {
                        elem.set_metadata(o.progress.encode());
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot build the offsets to commit");
                    self.abort(state, consumer, "send_offsets", None);
                    return false;
                }
            }
        }
        if !self.cfg.guarantee.transactional() {
            if !self.commit_offsets(state, consumer, &tpl) {
                return false;
            }
            let added = state.ledger.committed();
            state.txn = None;
            self.record_commit(state, &offsets, &added, started.elapsed(), why);
            return true;
        }
        let group = if tpl.count() > 0 {
            let Some(group) = consumer.group_metadata() else {
                warn!("no consumer group metadata to commit with; aborting");
                self.abort(state, consumer, "send_offsets", None);
                return false;
            };
            Some(group)
        } else {
            None
        };
        // Every output of this transaction is in the log before the next transaction (on another
        // producer) sends its first: per output partition, records stay in input order.
        let index = state.turn % self.producers.len();
        let producer = &self.producers[index];
        if let Err(f) = retrying(&self.producers, TxnOperation::Commit, "commit", || {
            drain(producer, self.timeout)
        }) {
            self.txn_error_decided(state, consumer, f.step, &f.error, f.decision, None);
            return false;
        }
        self.metrics
            .drain_seconds
            .observe(started.elapsed().as_secs_f64());
        let before = state.ledger.clone();
        let added = state.ledger.committed();
        state.txn = None;
        self.next_turn(state);
        let producers = Arc::clone(&self.producers);
        let timeout = self.timeout;
        let job = move || CommitOutcome {
            result: commit_transaction_on(&producers, index, &tpl, group.as_ref(), timeout),
            took: started.elapsed(),
        };
        let overlap = overlap && self.producers.len() > 1;
        let commit = if overlap {
            match std::thread::Builder::new()
                .name("committer".into())
                .spawn(job)
            {
                Ok(running) => Handed::Running(running),
                Err(e) => {
                    // The transaction stays open; the restarted worker's producer aborts it.
                    error!(error = %e, "cannot start the committer thread");
                    state.exit = Some(ExitReason::Fatal);
                    return false;
                }
            }
        } else {
            Handed::Done(job())
        };
        state.pending = Some(Pending {
            producer: index,
            commit,
            before,
            offsets,
            added,
            why,
        });
        overlap || self.settle(state, consumer, None)
    }

    /// A commit went through: metrics, and the refused records it passed are forgotten.
    fn record_commit(
        &self,
        state: &mut State,
        offsets: &[OffsetToCommit],
        added: &Progress,
        took: Duration,
        why: &str,
    ) {
        state.poisoned.retain(|((topic, partition), offset), _| {
            !offsets
                .iter()
                .any(|o| o.topic == *topic && o.partition == *partition && *offset < o.offset)
        });
        self.metrics.committed(added, took.as_secs_f64());
        debug!(
            why,
            records = added.in_records,
            partitions = offsets.len(),
            "transaction committed"
        );
    }

    /// Waits for the commit handed to the committer thread, if any; true unless it failed.
    ///
    /// A failed commit takes the open transaction with it (its offsets would pass records that
    /// were not committed): both are aborted, the ledger is put back to before the failed one,
    /// and every partition is rewound to where the failed one began (or, for a partition only
    /// the later one consumed, to where that began; `current` too, a record being processed
    /// that is in neither).
    fn settle(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        current: Option<(&TopicPartition, i64)>,
    ) -> bool {
        let Some(pending) = state.pending.take() else {
            return true;
        };
        let outcome = match pending.commit {
            Handed::Done(outcome) => outcome,
            Handed::Running(running) => {
                let Ok(outcome) = running.join() else {
                    error!("the committer thread panicked");
                    state.exit = Some(ExitReason::Fatal);
                    return false;
                };
                outcome
            }
        };
        let failure = match outcome.result {
            Ok(()) => {
                self.record_commit(
                    state,
                    &pending.offsets,
                    &pending.added,
                    outcome.took,
                    pending.why,
                );
                return true;
            }
            Err(failure) => failure,
        };
        if state.exit.is_some() {
            // On its way out anyway: the restarted worker's producers abort what is open.
            return false;
        }
        if let Decision::Exit(exit) = failure.decision {
            error!(error = %failure.error, reason = failure.step, exit = exit.label(), "cannot go on");
            state.exit = Some(self.exit_reason(failure.decision));
            return false;
        }
        warn!(
            error = %failure.error,
            reason = failure.step,
            "transaction failed; aborting it and any begun after it"
        );
        let mut aborted = 1;
        if state.txn.is_some() {
            if !self.abort_on(state, state.turn % self.producers.len()) {
                return false;
            }
            state.txn = None;
            aborted += 1;
        }
        if !self.abort_on(state, pending.producer) {
            return false;
        }
        let rewinds = state.ledger.undo_commit(pending.before);
        for _ in 0..aborted {
            self.count_abort(state, failure.step);
        }
        self.rewind(state, consumer, rewinds, current, failure.step);
        false
    }

    /// `AtLeastOnce`: flushes the producer, checks that every record sent since the batch began
    /// was delivered, then commits `tpl` with the consumer; false when the batch was rewound
    /// instead (or the worker exits).
    fn commit_offsets(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        tpl: &TopicPartitionList,
    ) -> bool {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match drain(self.producer(state), self.timeout) {
                Ok(()) => {
                    self.metrics
                        .drain_seconds
                        .observe(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) => {
                    match decide::on_kafka_error(TxnOperation::Commit, self.facts(&e), attempt) {
                        Decision::Retry => {
                            debug!(error = %e, attempt, "retrying the flush");
                            std::thread::sleep(decide::retry_backoff(attempt));
                            attempt += 1;
                        }
                        decision => {
                            self.txn_error_decided(state, consumer, "flush", &e, decision, None);
                            return false;
                        }
                    }
                }
            }
        }
        let failed = self
            .failed_deliveries()
            .saturating_sub(state.failed_deliveries_at_begin);
        if !decide::may_commit_offsets(failed) {
            warn!(
                failed,
                "records of this batch were not delivered; not committing its offsets, \
                 producing the batch again"
            );
            self.abort(state, consumer, "delivery", None);
            return false;
        }
        if tpl.count() == 0 {
            return true;
        }
        let mut attempt = 0;
        loop {
            match consumer.commit(tpl, CommitMode::Sync) {
                Ok(()) => return true,
                Err(e) => {
                    let failure = offset_commit_failure(&e);
                    match decide::on_offset_commit_error(failure, attempt) {
                        Decision::Retry => {
                            debug!(error = %e, attempt, "retrying the offset commit");
                            std::thread::sleep(decide::retry_backoff(attempt));
                            attempt += 1;
                        }
                        decision => {
                            self.txn_error_decided(
                                state,
                                consumer,
                                "offset_commit",
                                &e,
                                decision,
                                None,
                            );
                            return false;
                        }
                    }
                }
            }
        }
    }

    /// Records the producer failed to deliver since it started.
    fn failed_deliveries(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| p.context().failed.load(Ordering::SeqCst))
            .sum()
    }

    /// Aborts the open transaction and rewinds what it consumed; `current` is a record that was
    /// being processed and is not in the ledger yet.
    fn abort(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        reason: &str,
        current: Option<(&TopicPartition, i64)>,
    ) {
        if !self.settle(state, consumer, current) {
            // The commit before failed: it took the open transaction with it, and rewound.
            return;
        }
        if state.txn.is_some() && !self.cfg.guarantee.transactional() {
            // Nothing to take back: what the batch produced stays, and is produced again.
            state.txn = None;
            self.metrics.aborted(reason);
        }
        if state.txn.is_some() {
            if !self.abort_on(state, state.turn % self.producers.len()) {
                return;
            }
            state.txn = None;
            self.next_turn(state);
            self.count_abort(state, reason);
        }
        let rewinds = state.ledger.aborted();
        self.rewind(state, consumer, rewinds, current, reason);
    }

    /// Aborts the transaction open on producer `index`; false (and the worker exits) when it
    /// cannot.
    fn abort_on(&self, state: &mut State, index: usize) -> bool {
        let producer = &self.producers[index];
        match retrying(&self.producers, TxnOperation::Abort, "abort", || {
            producer.abort_transaction(self.timeout)
        }) {
            Ok(()) => true,
            Err(f) => {
                error!(error = %f.error, "cannot abort the transaction");
                state.exit = Some(self.exit_reason(f.decision));
                false
            }
        }
    }

    /// One aborted transaction: counted in the metrics and by the next commit.
    fn count_abort(&self, state: &mut State, reason: &str) {
        self.metrics.aborted(reason);
        state.ledger.note_abort();
        state.aborted_since_start += 1;
    }

    /// Seeks every partition an abort took back (and `current`, if not among them) to where it
    /// must be read again.
    fn rewind(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        mut rewinds: Vec<Rewind>,
        current: Option<(&TopicPartition, i64)>,
        reason: &str,
    ) {
        if let Some((tp, offset)) = current
            && !rewinds
                .iter()
                .any(|r| r.topic == tp.0 && r.partition == tp.1)
        {
            rewinds.push(Rewind {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
            });
        }
        for r in rewinds {
            self.seek(state, consumer, &r.topic, r.partition, r.offset);
        }
        info!(
            reason,
            "transaction aborted; consumer rewound to where it began"
        );
    }

    /// Seeks one partition. Failing to rewind would skip records, so it ends the worker (a
    /// restart resumes from the committed offsets).
    fn seek(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        if let Err(e) = consumer.seek(topic, partition, Offset::Offset(offset), REQUEST_TIMEOUT) {
            error!(error = %e, topic, partition, offset, "cannot rewind the consumer");
            state.exit = Some(ExitReason::Fatal);
        }
    }

    fn on_txn_error(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        operation: TxnOperation,
        e: &KafkaError,
        current: Option<(&TopicPartition, i64)>,
    ) {
        let decision = decide::on_kafka_error(operation, self.facts(e), 0);
        let reason = match operation {
            TxnOperation::Produce => "produce",
            TxnOperation::SendOffsets => "send_offsets",
            TxnOperation::Commit => "commit",
            _ => "error",
        };
        // A retry of a single send is not worth it: the producer already retries internally.
        let decision = if decision == Decision::Retry {
            Decision::AbortAndRewind
        } else {
            decision
        };
        self.txn_error_decided(state, consumer, reason, e, decision, current);
    }

    fn txn_error_decided(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        reason: &str,
        e: &KafkaError,
        decision: Decision,
        current: Option<(&TopicPartition, i64)>,
    ) {
        match decision {
            Decision::AbortAndRewind | Decision::Retry => {
                warn!(error = %e, reason, "transaction failed; aborting");
                self.abort(state, consumer, reason, current);
            }
            Decision::Exit(exit) => {
                error!(error = %e, reason, exit = exit.label(), "cannot go on");
                state.exit = Some(self.exit_reason(Decision::Exit(exit)));
            }
        }
    }

    fn exit_reason(&self, decision: Decision) -> ExitReason {
        let exit = match decision {
            Decision::Exit(exit) => exit,
            _ => ExitReason::Fatal,
        };
        if exit == ExitReason::Fenced {
            self.metrics.fencings.inc();
            error!(
                "fenced: a newer worker owns this transactional.id or the group moved on; exiting \
                 so the restarted worker resumes from the committed offsets"
            );
        }
        exit
    }

    /// The Kafka client's judgement of `e`, plus whether it means fencing. A fenced producer
    /// reports a fatal error whose cause is only in the client's fatal-error slot.
    fn facts(&self, e: &KafkaError) -> KafkaErrorFacts {
        facts_of(&self.producers, e)
    }

    /// Commits (or, failing that, aborts) the open transaction on shutdown.
    fn finish(&self, state: &mut State, consumer: &BaseConsumer<Pipeline>) {
        self.settle(state, consumer, None);
        if state.txn.is_some() {
            info!("shutting down: committing the open transaction");
            self.commit(state, consumer, "shutdown");
        }
        if state.txn.is_some() && state.exit.is_none() {
            self.abort(state, consumer, "shutdown", None);
        }
    }

    /// Reads the committed progress of one partition; false when the broker did not answer.
    fn read_progress(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        tp: &TopicPartition,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        self.read_committed_progress(state, consumer, tpl)
    }

    fn read_unknown_progress(&self, state: &mut State, consumer: &BaseConsumer<Pipeline>) {
        let unknown = state.ledger.unknown_progress();
        if unknown.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &unknown {
            tpl.add_partition(topic, *partition);
        }
        self.read_committed_progress(state, consumer, tpl);
    }

    /// Fetches committed offsets (stable ones: `read_committed` makes librdkafka wait for
    /// pending transactional commits) and records their progress metadata.
    fn read_committed_progress(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<Pipeline>,
        tpl: TopicPartitionList,
    ) -> bool {
        match consumer.committed_offsets(tpl, REQUEST_TIMEOUT) {
            Ok(committed) => {
                let mut all = true;
                for elem in committed.elements() {
                    let tp = (elem.topic().to_string(), elem.partition());
                    if let Err(e) = elem.error() {
                        debug!(error = %e, topic = %tp.0, partition = tp.1, "no committed offset yet");
                        all = false;
                        continue;
                    }
                    // rdkafka panics on metadata that is not UTF-8 (someone else's commit):
                    // such metadata is not ours, so count from zero.
                    let metadata = catch_unwind(AssertUnwindSafe(|| elem.metadata().to_string()))
                        .unwrap_or_default();
                    let progress = Progress::decode(&metadata).unwrap_or_default();
                    if let Some(stop) = progress.stopped() {
                        info!(
                            topic = %tp.0,
                            partition = tp.1,
                            stop,
                            "the last commit of this partition stopped the pipeline \
                             (errorPolicy Stop); retrying the record"
                        );
                    }
                    state.ledger.set_committed(&tp, progress);
                }
                all
            }
            Err(e) => {
                warn!(error = %e, "cannot read the committed offsets; will retry");
                false
            }
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Pipeline>, partitions: &TopicPartitionList) {
        let lost = consumer.assignment_lost();
        self.metrics
            .rebalanced(if lost { "lost" } else { "revoke" });
        let mut state = self.lock();
        let revoked: Vec<TopicPartition> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if lost {
            // Not ours to seek any more, whatever happens to the commits in flight.
            for tp in &revoked {
                state.ledger.revoke(tp);
                if let Some(pending) = state.pending.as_mut() {
                    pending.before.revoke(tp);
                }
            }
        }
        // The partitions go only once the commit in flight is done (or undone).
        self.settle(&mut state, consumer, None);
        // A worker on its way out (fatal, fenced) closes its consumer with the transaction
        // still open: the producer cannot end it, the coordinator will.
        let open = state.txn.is_some() && state.exit.is_none();
        match decide::on_revoke(lost, open) {
            RebalanceAction::Commit => {
                self.commit(&mut state, consumer, "revoke");
            }
            RebalanceAction::Abort => self.abort(&mut state, consumer, "lost", None),
            RebalanceAction::Nothing => {}
        }
        if state.txn.is_some() && state.exit.is_none() {
            // The commit failed and its abort did not clear the transaction: end it here, it
            // must not outlive the partitions.
            self.abort(&mut state, consumer, "revoke", None);
        }
        for tp in &revoked {
            state.ledger.revoke(tp);
        }
        // Their next owner finds the refused records again by itself.
        state.poisoned.retain(|(tp, _), _| !revoked.contains(tp));
        self.metrics
            .assigned_partitions
            .set(state.ledger.assigned().count() as i64);
        info!(
            partitions = %describe(&revoked),
            lost,
            "partitions {}",
            if lost { "lost" } else { "revoked" }
        );
    }

    fn on_assign(&self, consumer: &BaseConsumer<Pipeline>, partitions: &TopicPartitionList) {
        self.metrics.rebalanced("assign");
        self.health.set_joined();
        let mut state = self.lock();
        // A failed commit in flight puts the ledger back as it was before: settle it before the
        // ledger learns the new partitions.
        self.settle(&mut state, consumer, None);
        let assigned: Vec<TopicPartition> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for tp in &assigned {
            state.ledger.assign(tp.clone(), None);
        }
        if !assigned.is_empty() {
            self.read_committed_progress(&mut state, consumer, partitions.clone());
        }
        if state.stopped.is_some()
            && !assigned.is_empty()
            && let Err(e) = consumer.pause(partitions)
        {
            warn!(error = %e, "cannot pause the newly assigned partitions");
        }
        self.metrics
            .assigned_partitions
            .set(state.ledger.assigned().count() as i64);
        info!(
            partitions = %describe(&assigned),
            total = state.ledger.assigned().count(),
            "partitions assigned"
        );
    }
}

fn describe(partitions: &[TopicPartition]) -> String {
    partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The record as the transform sees it. rdkafka panics on a header name that is not UTF-8; such
/// a record is a record error rather than the end of the worker.
fn input_record(message: &BorrowedMessage<'_>) -> Result<InputRecord, String> {
    let headers = catch_unwind(AssertUnwindSafe(|| {
        message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
    }))
    .map_err(|_| "a header name is not UTF-8".to_string())?;
    Ok(InputRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    })
}

/// The Kafka client's judgement of `e`, plus whether it means fencing (a fenced producer
/// reports a fatal error whose cause is only in the client's fatal-error slot).
fn facts_of(producers: &[ThreadedProducer<ProducerLog>], e: &KafkaError) -> KafkaErrorFacts {
    let mut facts = error_facts(e);
    if facts.fatal
        && producers
            .iter()
            .filter_map(|p| p.client().fatal_error())
            .any(|(code, _)| is_fencing(code))
    {
        facts.fenced = true;
    }
    facts
}

/// Runs `call`, a transactional step (init, send_offsets, commit, abort, or the drain before a
/// commit), again while the error is retriable; the failure and what to do about it otherwise.
fn retrying(
    producers: &[ThreadedProducer<ProducerLog>],
    operation: TxnOperation,
    step: &'static str,
    mut call: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), CommitFailure> {
    let mut attempt = 0;
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(error) => {
                match decide::on_kafka_error(operation, facts_of(producers, &error), attempt) {
                    Decision::Retry => {
                        debug!(%error, attempt, "retrying {step}");
                        std::thread::sleep(decide::retry_backoff(attempt));
                        attempt += 1;
                    }
                    decision => {
                        return Err(CommitFailure {
                            step,
                            error,
                            decision,
                        });
                    }
                }
            }
        }
    }
}

/// Sends `offsets` to the transaction open on producer `index` (with the consumer's `group`
/// metadata; none when there are no offsets) and commits it. Runs on the committer thread.
fn commit_transaction_on(
    producers: &[ThreadedProducer<ProducerLog>],
    index: usize,
    offsets: &TopicPartitionList,
    group: Option<&ConsumerGroupMetadata>,
    timeout: Duration,
) -> Result<(), CommitFailure> {
    let producer = &producers[index];
    if let Some(group) = group {
        retrying(producers, TxnOperation::SendOffsets, "send_offsets", || {
            producer.send_offsets_to_transaction(offsets, group, timeout)
        })?;
    }
    retrying(producers, TxnOperation::Commit, "commit", || {
        drain(producer, timeout).and_then(|()| producer.commit_transaction(timeout))
    })
}

/// Waits until `producer` has a broker connection (it fetches `topic`'s metadata, or all
/// topics' without one), so that `init_transactions` finds the transaction coordinator at once:
/// librdkafka looks it up the moment it is asked, and when no connection is up yet, as with a
/// producer just created, it tries again only 500 ms later. (Another 500 ms wait of librdkafka's,
/// for the coordinator's own connection, still shows in some starts.) Failing here costs only
/// that delay: `init_transactions` retries by itself.
fn await_broker(producer: &ThreadedProducer<ProducerLog>, topic: Option<&str>) {
    if let Err(e) = producer.client().fetch_metadata(topic, REQUEST_TIMEOUT) {
        debug!(error = %e, "no broker answered the producer's metadata request yet");
    }
}

/// Initialises `producer`'s transactions (fencing older instances of its transactional id),
/// retrying until it succeeds or the error is final.
fn init_transactions(
    producer: &ThreadedProducer<ProducerLog>,
    timeout: Duration,
) -> Result<(), ExitReason> {
    retrying(
        std::slice::from_ref(producer),
        TxnOperation::Init,
        "init_transactions",
        || {
            producer
                .init_transactions(timeout)
                .inspect_err(|e| warn!(error = %e, "cannot initialise transactions yet"))
        },
    )
    .map_err(|f| {
        error!(error = %f.error, decision = ?f.decision, "init_transactions failed");
        match f.decision {
            Decision::Exit(exit) => exit,
            _ => ExitReason::Fatal,
        }
    })
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
    )
}

/// What librdkafka says about an error.
fn error_facts(e: &KafkaError) -> KafkaErrorFacts {
    match e {
        KafkaError::Transaction(err) => KafkaErrorFacts {
            fatal: err.is_fatal(),
            abortable: err.txn_requires_abort(),
            retriable: err.is_retriable(),
            fenced: is_fencing(err.code()),
        },
        other => {
            let code = other.rdkafka_error_code();
            KafkaErrorFacts {
                fatal: code == Some(RDKafkaErrorCode::Fatal)
                    || matches!(other, KafkaError::MessageConsumptionFatal(_)),
                abortable: false,
                // commit_transaction flushes first and reports a flush timeout as `Flush`.
                retriable: matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::OperationTimedOut
                            | RDKafkaErrorCode::RequestTimedOut
                            | RDKafkaErrorCode::QueueFull
                    )
                ),
                fenced: code.is_some_and(is_fencing),
            }
        }
    }
}

/// How a consumer offset commit failed (`AtLeastOnce`).
fn offset_commit_failure(e: &KafkaError) -> OffsetCommitFailure {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        return OffsetCommitFailure::Fatal;
    }
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException,
        ) => OffsetCommitFailure::Transient,
        Some(
            RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::StaleMemberEpoch,
        ) => OffsetCommitFailure::StaleGeneration,
        Some(RDKafkaErrorCode::FencedInstanceId) => OffsetCommitFailure::Fenced,
        Some(RDKafkaErrorCode::Fatal) => OffsetCommitFailure::Fatal,
        _ => OffsetCommitFailure::Other,
    }
}

impl ClientContext for Pipeline {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(client = "consumer", %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for Pipeline {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => self.on_revoke(consumer, partitions),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.metrics.rebalanced("error");
                warn!(error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.on_assign(consumer, partitions);
        }
    }
}

/// The producer's context: librdkafka's logs into tracing, and the count of failed deliveries.
/// Under transactions a delivery failure surfaces as an abortable commit error; under
/// `AtLeastOnce` the count keeps a batch with a lost record from committing its offsets.
#[derive(Default)]
struct ProducerLog {
    failed: AtomicU64,
}

impl ClientContext for ProducerLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka("producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(client = "producer", %error, reason, "librdkafka error");
    }
}

impl ProducerContext for ProducerLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            debug!(error = %e, topic = message.topic(), "delivery failed");
        }
    }
}

fn log_librdkafka(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(client, fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => warn!(client, fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            info!(client, fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => debug!(client, fac, "librdkafka: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WorkerConfig {
        match serde_json::from_str(
            r#"{"pipeline": "a/b", "bootstrapServers": "k:9092", "groupId": "g",
                "clientProperties": {"security.protocol": "plaintext", "client.id": "mine"},
                "inputTopics": ["in"], "transactionalIdPrefix": "exactly-a-b",
                "transactionTimeoutMs": 30000, "startFrom": "Latest",
                "output": {"topics": {"out": "out"}, "defaultTopic": "out"}}"#,
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn producer_is_transactional_with_a_stable_id() {
        let config = producer_config(&cfg(), 2, 0);
        assert_eq!(config.get("transactional.id"), Some("exactly-a-b-2"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(
            config.get("max.in.flight.requests.per.connection"),
            Some("5")
        );
        assert_eq!(config.get("transaction.timeout.ms"), Some("30000"));
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("client.id"), Some("mine"));
    }

    #[test]
    fn a_workers_second_producer_has_its_own_stable_id_under_the_same_ordinal() {
        let ids: Vec<String> = (0..2)
            .map(|i| producer_transactional_id(&cfg(), 2, i))
            .collect();
        assert_eq!(ids, vec!["exactly-a-b-2", "exactly-a-b-2.1"]);
        assert_eq!(
            producer_config(&cfg(), 2, 1).get("transactional.id"),
            Some("exactly-a-b-2.1")
        );
    }

    #[test]
    fn at_least_once_producer_is_idempotent_without_transactions() {
        let mut c = cfg();
        c.guarantee = Guarantee::AtLeastOnce;
        let config = producer_config(&c, 2, 0);
        assert_eq!(config.get("transactional.id"), None);
        assert_eq!(config.get("transaction.timeout.ms"), None);
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(
            config.get("max.in.flight.requests.per.connection"),
            Some("5")
        );
        // The consumer is the same: read_committed, offsets committed by the worker alone.
        let exactly_once = consumer_config(&cfg(), 2);
        let at_least_once = consumer_config(&c, 2);
        assert_eq!(exactly_once.config_map(), at_least_once.config_map());
    }

    #[test]
    fn offset_commit_failures_are_classified() {
        let failure = |code| offset_commit_failure(&KafkaError::ConsumerCommit(code));
        assert_eq!(
            failure(RDKafkaErrorCode::RebalanceInProgress),
            OffsetCommitFailure::Transient
        );
        assert_eq!(
            failure(RDKafkaErrorCode::CoordinatorLoadInProgress),
            OffsetCommitFailure::Transient
        );
        assert_eq!(
            failure(RDKafkaErrorCode::IllegalGeneration),
            OffsetCommitFailure::StaleGeneration
        );
        assert_eq!(
            failure(RDKafkaErrorCode::UnknownMemberId),
            OffsetCommitFailure::StaleGeneration
        );
        assert_eq!(
            failure(RDKafkaErrorCode::FencedInstanceId),
            OffsetCommitFailure::Fenced
        );
        assert_eq!(
            failure(RDKafkaErrorCode::TopicAuthorizationFailed),
            OffsetCommitFailure::Other
        );
    }

    #[test]
    fn consumer_reads_committed_and_never_auto_commits() {
        let config = consumer_config(&cfg(), 0);
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(
            config.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(config.get("auto.offset.reset"), Some("latest"));
        assert_eq!(config.get("enable.partition.eof"), Some("false"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
    }

    #[test]
    fn the_consumer_refetches_after_a_short_backoff_unless_client_properties_say_otherwise() {
        assert_eq!(
            consumer_config(&cfg(), 0).get("fetch.queue.backoff.ms"),
            Some(FETCH_QUEUE_BACKOFF_MS)
        );
        let mut c = cfg();
        c.client_properties
            .insert("fetch.queue.backoff.ms".into(), "250".into());
        assert_eq!(
            consumer_config(&c, 0).get("fetch.queue.backoff.ms"),
            Some("250")
        );
    }

    #[test]
    fn managed_keys_win_over_client_properties() {
        let mut c = cfg();
        c.client_properties
            .insert("isolation.level".into(), "read_uncommitted".into());
        c.client_properties.insert("acks".into(), "1".into());
        assert_eq!(
            consumer_config(&c, 0).get("isolation.level"),
            Some("read_committed")
        );
        assert_eq!(producer_config(&c, 0, 0).get("acks"), Some("all"));
    }

    #[test]
    fn fencing_codes_are_recognised() {
        assert!(is_fencing(RDKafkaErrorCode::ProducerFenced));
        assert!(is_fencing(RDKafkaErrorCode::InvalidProducerEpoch));
        assert!(is_fencing(RDKafkaErrorCode::Fenced));
        assert!(!is_fencing(RDKafkaErrorCode::UnknownMemberId));
        let facts = error_facts(&KafkaError::MessageProduction(
            RDKafkaErrorCode::ProducerFenced,
        ));
        assert!(facts.fenced);
        let facts = error_facts(&KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        assert!(facts.retriable && !facts.fatal && !facts.abortable);
    }
}
