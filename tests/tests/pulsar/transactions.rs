//! Pulsar transactions, as an exactly-once worker uses them, with Pulsar's own Java client
//! (`exactly_testenv::pulsar_check`): in ONE transaction, acknowledge messages of an input topic
//! on a subscription and send their results to an output topic, then commit, abort, or crash
//! with the transaction open. What each end leaves is read back with fresh consumers.
//!
//! Input and output are partitioned (2 partitions each), as the operator's Topics are; the input
//! holds `m-0`..`m-4`, a transaction sends `out-0`..`out-4`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exactly_testenv::pulsar::{self, Pulsar, TestTenant};
use exactly_testenv::pulsar_check::{self, HALTED, Read, Txn, TxnEnd, TxnRun};

use crate::{eventually, get, request};

const COUNT: u32 = 5;
const PARTITIONS: &str = "2";
/// The subscription the transactions consume the input on.
const SUBSCRIPTION: &str = "worker";
/// A reader stops when nothing arrived for this long (also how long "nothing" is waited for).
const IDLE: Duration = Duration::from_secs(5);

/// A tenant's input topic, holding `m-0`..`m-4`, and its empty output topic.
struct Pipeline {
    pulsar: &'static Pulsar,
    /// Kept for the test's duration: a panic keeps the standalone's logs.
    _tenant: TestTenant,
    input: String,
    output: String,
}

impl Pipeline {
    fn new(prefix: &str) -> Pipeline {
        let pulsar = pulsar::shared();
        let tenant = pulsar.tenant(prefix).unwrap_or_else(|e| panic!("{e}"));
        let t = tenant.name.clone();
        request(
            pulsar,
            "PUT",
            &format!("/admin/v2/namespaces/{t}/flow"),
            None,
            204,
        );
        for topic in ["input", "output"] {
            request(
                pulsar,
                "PUT",
                &format!("/admin/v2/persistent/{t}/flow/{topic}/partitions"),
                Some(PARTITIONS),
                204,
            );
        }
        let pipeline = Pipeline {
            pulsar,
            _tenant: tenant,
            input: format!("persistent://{t}/flow/input"),
            output: format!("persistent://{t}/flow/output"),
        };
        let config = config_file(pulsar, &format!("{t}-input.properties"));
        pulsar_check::write_properties(&config, &[("serviceUrl", &pulsar.service_url)])
            .unwrap_or_else(|e| panic!("{e}"));
        let produced = checker()
            .produce(&config, &pipeline.input, 0..=u64::from(COUNT - 1), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(produced.sent, u64::from(COUNT), "{produced:?}");
        pipeline
    }

    /// One transaction on the input's subscription [`SUBSCRIPTION`].
    fn txn(&self, end: TxnEnd, timeout: Option<Duration>) -> Txn {
        let txn = checker()
            .txn(&TxnRun {
                service_url: &self.pulsar.service_url,
                input: &self.input,
                subscription: SUBSCRIPTION,
                output: &self.output,
                count: COUNT,
                end,
                timeout,
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let expected = if end == TxnEnd::Open { HALTED } else { 0 };
        assert_eq!(txn.exit_code, expected, "{txn:?}");
        txn
    }

    /// What a fresh subscription `name` reads from `topic` (committed messages only).
    fn read(&self, topic: &str, subscription: &str) -> Read {
        checker()
            .read(&self.pulsar.service_url, topic, subscription, IDLE)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn checker() -> &'static pulsar_check::Checker {
    pulsar_check::checker().unwrap_or_else(|e| panic!("{e}"))
}

/// A file for the checker in the standalone's directory (kept with its logs when a test fails).
fn config_file(pulsar: &Pulsar, name: &str) -> PathBuf {
    let dir = pulsar.dir.join("checker");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

/// `<prefix>-0`..`<prefix>-4`, sorted (the partitions interleave in any order).
fn payloads(prefix: &str) -> Vec<String> {
    let mut all: Vec<String> = (0..COUNT).map(|i| format!("{prefix}-{i}")).collect();
    all.sort();
    all
}

fn sorted(mut payloads: Vec<String>) -> Vec<String> {
    payloads.sort();
    payloads
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The coordinator's view of a transaction: `Some(metadata)` while it knows it (open), `None`
/// once it has ended (the coordinator forgets an ended transaction: 404).
fn transaction_metadata(pulsar: &Pulsar, txn: &Txn) -> Option<serde_json::Value> {
    let (most, least) = txn.id().unwrap_or_else(|e| panic!("{e}"));
    let path = format!("/admin/v3/transactions/transactionMetadata/{most}/{least}");
    let response = pulsar
        .admin("GET", &path, None)
        .unwrap_or_else(|e| panic!("{e}"));
    match response.status {
        200 => Some(response.json().unwrap_or_else(|e| panic!("{e}"))),
        404 => None,
        _ => panic!("GET {path}: {response}"),
    }
}

/// `GET /admin/v3/transactions/slowTransactions/{ms}`: the open transactions it lists, by id.
fn slow_transactions(pulsar: &Pulsar, ms: u64) -> serde_json::Value {
    get(
        pulsar,
        &format!("/admin/v3/transactions/slowTransactions/{ms}"),
        200,
    )
    .json()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_aborted_transaction_publishes_nothing_and_its_input_is_delivered_again() {
    let pipeline = Pipeline::new("txn-abort");

    let aborted = pipeline.txn(TxnEnd::Abort, None);
    assert_eq!(
        sorted(aborted.received.clone()),
        payloads("m"),
        "{aborted:?}"
    );
    let output = pipeline.read(&pipeline.output, "after-abort");
    assert_eq!(
        output.received, 0,
        "the aborted sends are visible: {output:?}"
    );

    // The abort undid the acknowledgements: the same subscription gets the same messages again.
    let committed = pipeline.txn(TxnEnd::Commit, None);
    assert_eq!(
        sorted(committed.received.clone()),
        payloads("m"),
        "{committed:?}"
    );
    assert_ne!(committed.txn, aborted.txn);
    // And only the committed transaction's sends are ever delivered.
    let output = pipeline.read(&pipeline.output, "after-commit");
    assert_eq!(
        (output.received, output.distinct),
        (u64::from(COUNT), u64::from(COUNT)),
        "{output:?}"
    );
    assert_eq!(sorted(output.payloads), payloads("out"));
}

#[test]
fn a_committed_transaction_publishes_its_output_and_consumes_its_input() {
    let pipeline = Pipeline::new("txn-commit");

    let committed = pipeline.txn(TxnEnd::Commit, None);
    assert_eq!(
        sorted(committed.received.clone()),
        payloads("m"),
        "{committed:?}"
    );
    let output = pipeline.read(&pipeline.output, "reader");
    assert_eq!(
        (output.received, output.distinct),
        (u64::from(COUNT), u64::from(COUNT)),
        "{output:?}"
    );
    assert_eq!(sorted(output.payloads), payloads("out"));

    // Nothing is left for the transaction's subscription, though the input still holds all five
    // (a fresh subscription reads them).
    let left = pipeline.read(&pipeline.input, SUBSCRIPTION);
    assert_eq!(left.received, 0, "left on {SUBSCRIPTION}: {left:?}");
    let all = pipeline.read(&pipeline.input, "fresh");
    assert_eq!(sorted(all.payloads.clone()), payloads("m"), "{all:?}");
}

/// What Pulsar 4.0.7 shows of a transaction left open (found on the real broker):
/// - `coordinatorStats` counts it in `ongoingTxnSize`, and `transactionMetadata/{most}/{least}`
///   shows it `OPEN` with `timeoutAt` = its timeout in ms (a duration, despite the name).
/// - `slowTransactions/{ms}` lists the open transactions whose *timeout* is longer than ms
///   (`MLTransactionMetadataStore.getSlowTransactions`: `timeoutAt > ms`), not those open for
///   longer than ms: a transaction shows there from the moment it opens, until it ends.
/// - The coordinator aborts it itself once its timeout has passed (about 0.5 s later here), and
///   then forgets it: gone from `slowTransactions`, and `transactionMetadata` answers 404.
#[test]
fn an_open_transaction_is_listed_by_the_coordinator_until_its_timeout_aborts_it() {
    const TIMEOUT_MS: u64 = 15_000;
    let pipeline = Pipeline::new("txn-open");
    let pulsar = pipeline.pulsar;

    let txn = pipeline.txn(TxnEnd::Open, Some(Duration::from_millis(TIMEOUT_MS)));
    let id = txn.admin_id().unwrap_or_else(|e| panic!("{e}"));
    let metadata = transaction_metadata(pulsar, &txn)
        .unwrap_or_else(|| panic!("{id} unknown to the coordinator right after it opened"));
    assert_eq!(metadata["status"], "OPEN", "{metadata}");
    assert_eq!(metadata["timeoutAt"], TIMEOUT_MS, "{metadata}");
    let opened = metadata["openTimestamp"]
        .as_u64()
        .unwrap_or_else(|| panic!("no openTimestamp in {metadata}"));

    let stats = get(pulsar, "/admin/v3/transactions/coordinatorStats", 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    let ongoing: u64 = stats
        .as_object()
        .map(|c| {
            c.values()
                .filter_map(|s| s["ongoingTxnSize"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert!(ongoing >= 1, "no ongoing transaction: {stats}");

    // Listed by a threshold below its timeout though it has been open for less than that...
    let threshold = TIMEOUT_MS - 1_000;
    let age = now_ms().saturating_sub(opened);
    let slow = slow_transactions(pulsar, threshold);
    assert!(
        age < threshold,
        "the transaction is already {age} ms old: this test cannot tell timeout from age"
    );
    assert_eq!(slow[&id]["status"], "OPEN", "{id} in {slow}");
    // ...and not by its own timeout, however long it has been open.
    let slow = slow_transactions(pulsar, TIMEOUT_MS);
    assert!(slow.get(&id).is_none(), "{id} in {slow}");

    // The coordinator aborts it at its timeout and forgets it.
    let ended = eventually(
        &format!("the coordinator to abort {id}"),
        Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(60),
        || match transaction_metadata(pulsar, &txn) {
            Some(metadata) => Err(format!("still known: {metadata}")),
            None => Ok(now_ms()),
        },
    );
    assert!(
        ended.saturating_sub(opened) >= TIMEOUT_MS,
        "{id} ended {} ms after it opened, before its timeout",
        ended.saturating_sub(opened)
    );
    let slow = slow_transactions(pulsar, 0);
    assert!(slow.get(&id).is_none(), "{id} still listed: {slow}");
}

#[test]
fn a_transaction_left_open_by_a_crash_is_aborted_at_its_timeout_and_its_input_delivered_again() {
    let pipeline = Pipeline::new("txn-crash");
    let pulsar = pipeline.pulsar;

    let crashed = pipeline.txn(TxnEnd::Open, Some(Duration::from_secs(5)));
    assert_eq!(
        sorted(crashed.received.clone()),
        payloads("m"),
        "{crashed:?}"
    );
    eventually(
        &format!("the coordinator to abort {}", crashed.txn),
        Duration::from_secs(65),
        || match transaction_metadata(pulsar, &crashed) {
            Some(metadata) => Err(format!("still open: {metadata}")),
            None => Ok(()),
        },
    );
    let output = pipeline.read(&pipeline.output, "after-timeout");
    assert_eq!(
        output.received, 0,
        "the crashed sends are visible: {output:?}"
    );

    // The restarted worker's transaction gets the same input again, and commits it.
    let restarted = pipeline.txn(TxnEnd::Commit, None);
    assert_eq!(
        sorted(restarted.received.clone()),
        payloads("m"),
        "{restarted:?}"
    );
    let output = pipeline.read(&pipeline.output, "after-restart");
    assert_eq!(
        sorted(output.payloads.clone()),
        payloads("out"),
        "{output:?}"
    );
    assert_eq!(output.received, u64::from(COUNT), "{output:?}");
}
