//! Broker deduplication, proven with Pulsar's own Java client (`exactly_testenv::pulsar_check`):
//! a producer configured as the operator renders it (a stable `producerName`, `sendTimeoutMs=0`,
//! `blockIfQueueFull=true`) sends messages with explicit sequence ids, crashes mid-stream, and
//! restarts under the same name resending from an earlier point. With the topic's
//! deduplication policy on, a fresh reader sees every message exactly once; with it off (the
//! negative control) it sees the resent overlap twice, so the check can fail.
//!
//! The topic is partitioned (3 partitions), as the operator's Topics are: the producer routes by
//! key (`k-<i>`, the same partition on the resend) and the broker keeps the highest persisted
//! sequence id per producer name *per partition*, so this also proves that a producer of a
//! partitioned topic may restart from any earlier sequence id.

use std::path::PathBuf;
use std::time::Duration;

use exactly_testenv::pulsar::{self, AdminResponse, Pulsar, TestTenant};
use exactly_testenv::pulsar_check::{self, HALTED, Produced, Read};

use crate::{eventually, get, request};

const PARTITIONS: u32 = 3;
/// The first run sends 0..=999 but crashes after this many receipts (0..=599 persisted).
const CRASH_AFTER: u64 = 600;
/// The restart resends from here: 400..=599 is the overlap, 600..=1999 is new.
const RESTART_FROM: u64 = 400;
const LAST: u64 = 1999;
/// A reader stops when nothing arrived for this long.
const IDLE: Duration = Duration::from_secs(5);
/// The cursor a partition's deduplication keeps its snapshot in, present only while it is on.
const DEDUP_CURSOR: &str = "pulsar.dedup";

/// What one crash-and-resend run left behind.
struct Run {
    /// Kept for the test's duration: a panic keeps the standalone's logs.
    _tenant: TestTenant,
    crashed: Produced,
    restarted: Produced,
    read: Read,
    /// Entries the broker stored, summed over the partitions (one message each: every send
    /// waits for its receipt, so no batch holds more than one).
    entries: u64,
}

/// A partitioned topic with the topic-level policy `deduplicationEnabled=<dedup>`, waited for
/// until every partition runs with it; then the crash, the restart, and a fresh read.
fn crash_and_resend(prefix: &str, dedup: bool) -> Run {
    let pulsar = pulsar::shared();
    let checker = pulsar_check::checker().unwrap_or_else(|e| panic!("{e}"));
    let tenant = pulsar.tenant(prefix).unwrap_or_else(|e| panic!("{e}"));
    let t = &tenant.name;
    request(
        pulsar,
        "PUT",
        &format!("/admin/v2/namespaces/{t}/payments"),
        None,
        204,
    );
    let path = format!("/admin/v2/persistent/{t}/payments/orders");
    let topic = format!("persistent://{t}/payments/orders");
    let partitions = PARTITIONS.to_string();
    request(
        pulsar,
        "PUT",
        &format!("{path}/partitions"),
        Some(&partitions),
        204,
    );
    set_deduplication(pulsar, &path, dedup);

    let config = config_file(pulsar, &format!("{t}-producer.properties"));
    pulsar_check::write_properties(
        &config,
        &[
            ("serviceUrl", &pulsar.service_url),
            ("producerName", &format!("{t}-worker-0")),
            ("sendTimeoutMs", "0"),
            ("blockIfQueueFull", "true"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let crashed = checker
        .produce(&config, &topic, 0..=999, Some(CRASH_AFTER))
        .unwrap_or_else(|e| panic!("{e}"));
    let restarted = checker
        .produce(&config, &topic, RESTART_FROM..=LAST, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let read = checker
        .read(&pulsar.service_url, &topic, "proof", IDLE)
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = get(pulsar, &format!("{path}/partitioned-internalStats"), 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    let entries = stats["partitions"]
        .as_object()
        .map(|p| {
            p.values()
                .filter_map(|s| s["entriesAddedCounter"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    Run {
        _tenant: tenant,
        crashed,
        restarted,
        read,
        entries,
    }
}

/// Sets the topic-level policy and waits until it reads back, applied, and every partition runs
/// with it: deduplication keeps its state in the cursor `pulsar.dedup` while on (it is on
/// broker-wide, so a partition loaded before the policy arrived drops the cursor once it is off).
fn set_deduplication(pulsar: &Pulsar, path: &str, on: bool) {
    let policy = format!("{path}/deduplicationEnabled");
    let value = on.to_string();
    request(pulsar, "POST", &policy, Some(&value), 204);
    eventually(
        &format!("deduplicationEnabled={value} on every partition"),
        Duration::from_secs(60),
        || {
            let set = try_get(pulsar, &policy)?;
            let applied = try_get(pulsar, &format!("{policy}?applied=true"))?;
            if set.body.trim() != value || applied.body.trim() != value {
                return Err(format!("set: {set}; applied: {applied}"));
            }
            for partition in 0..PARTITIONS {
                let stats = try_get(
                    pulsar,
                    &format!("{path}-partition-{partition}/internalStats"),
                )?
                .json()?;
                let has_cursor = stats["cursors"].get(DEDUP_CURSOR).is_some();
                if has_cursor != on {
                    return Err(format!(
                        "partition {partition}: cursor {DEDUP_CURSOR} present: {has_cursor}"
                    ));
                }
            }
            Ok(())
        },
    );
}

/// `GET path`, an error unless it answers 200 (for polling).
fn try_get(pulsar: &Pulsar, path: &str) -> Result<AdminResponse, String> {
    let response = pulsar.admin("GET", path, None)?;
    match response.status {
        200 => Ok(response),
        _ => Err(format!("GET {path}: {response}")),
    }
}

/// A file for the checker in the standalone's directory (kept with its logs when a test fails).
fn config_file(pulsar: &Pulsar, name: &str) -> PathBuf {
    let dir = pulsar.dir.join("checker");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

/// The sequence id in a payload `m-<i>`.
fn id_of(payload: &str) -> u64 {
    payload
        .strip_prefix("m-")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload {payload:?}"))
}

#[test]
fn a_producer_restarted_under_its_name_resends_an_overlap_that_deduplication_drops() {
    let run = crash_and_resend("dedup-on", true);

    // The crash: 600 receipts (sequence ids 0..=599), then the JVM halted.
    assert_eq!(run.crashed.exit_code, HALTED, "{:?}", run.crashed);
    assert_eq!(
        (run.crashed.sent, run.crashed.last_sequence_id),
        (CRASH_AFTER, CRASH_AFTER as i64 - 1),
        "{:?}",
        run.crashed
    );
    // The restart learnt from the broker where the crashed producer got to, and all 1600 sends
    // were acknowledged (the broker answers a duplicate it drops with a receipt, too).
    assert_eq!(
        run.restarted,
        Produced {
            sent: LAST - RESTART_FROM + 1,
            last_sequence_id: LAST as i64,
            last_sequence_id_at_start: CRASH_AFTER as i64 - 1,
            exit_code: 0,
        }
    );
    // Every message exactly once: 0..=1999 (payloads are m-0..m-1999 only, so 2000 distinct
    // ones are all of them).
    let expected = LAST + 1;
    assert_eq!(
        (run.read.received, run.read.distinct),
        (expected, expected),
        "{:?}",
        run.read
    );
    assert!(run.read.duplicates.is_empty(), "{:?}", run.read);
    assert_eq!(run.entries, expected, "entries the broker stored");
}

#[test]
fn without_deduplication_the_resent_overlap_is_delivered_twice() {
    let run = crash_and_resend("dedup-off", false);

    assert_eq!(run.crashed.exit_code, HALTED, "{:?}", run.crashed);
    assert_eq!(run.crashed.sent, CRASH_AFTER, "{:?}", run.crashed);
    // Off, the broker keeps no state for the producer name: the restart starts from nothing.
    assert_eq!(
        (run.restarted.sent, run.restarted.last_sequence_id_at_start),
        (LAST - RESTART_FROM + 1, -1),
        "{:?}",
        run.restarted
    );
    // 600 + 1600 messages, 2000 distinct: the 200 of the overlap (400..=599) twice.
    let overlap = CRASH_AFTER - RESTART_FROM;
    assert_eq!(
        (run.read.received, run.read.distinct),
        (LAST + 1 + overlap, LAST + 1),
        "{:?}",
        run.read
    );
    assert_eq!(run.read.duplicates.len(), 20, "{:?}", run.read);
    for payload in &run.read.duplicates {
        let id = id_of(payload);
        assert!(
            (RESTART_FROM..CRASH_AFTER).contains(&id),
            "{payload} is outside the overlap"
        );
    }
    assert_eq!(run.entries, LAST + 1 + overlap, "entries the broker stored");
}
