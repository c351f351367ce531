//! The standalone itself: what exactly-once on Pulsar needs is on, and transactions are served.

use exactly_testenv::pulsar::{self, CLUSTER, coordinators_ready, pinned_version};

use crate::get;

/// Keeps the standalone's logs when the test it guards fails.
struct KeepLogsOnFailure(&'static str);

impl Drop for KeepLogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            pulsar::shared().record_failure(self.0);
        }
    }
}

#[test]
fn transactions_are_enabled_and_every_coordinator_is_ready() {
    let _guard = KeepLogsOnFailure("transactions_are_enabled_and_every_coordinator_is_ready");
    let pulsar = pulsar::shared();
    assert!(
        pulsar.service_url.starts_with("pulsar://"),
        "{}",
        pulsar.service_url
    );
    assert!(
        pulsar.admin_url.starts_with("http://"),
        "{}",
        pulsar.admin_url
    );
    assert_eq!(pulsar.version, pinned_version());

    // The broker's effective configuration, as the operator will read it.
    let runtime = get(pulsar, "/admin/v2/brokers/configuration/runtime", 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    for key in [
        "transactionCoordinatorEnabled",
        "systemTopicEnabled",
        "topicLevelPoliciesEnabled",
        "brokerDeduplicationEnabled",
    ] {
        assert_eq!(runtime[key], "true", "{key} in {runtime}");
    }
    assert_eq!(runtime["clusterName"], CLUSTER);

    // One coordinator per partition of the assign topic, each loaded and Ready.
    let partitions = get(
        pulsar,
        "/admin/v2/persistent/pulsar/system/transaction_coordinator_assign/partitions",
        200,
    )
    .json()
    .unwrap_or_else(|e| panic!("{e}"))["partitions"]
        .as_u64()
        .unwrap_or(0);
    assert!(partitions >= 1, "no transaction coordinator");
    let count = u32::try_from(partitions).unwrap_or(u32::MAX);
    let stats = get(pulsar, "/admin/v3/transactions/coordinatorStats", 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    coordinators_ready(&stats, count).unwrap_or_else(|e| panic!("{e}: {stats}"));
    // Its load is a count (other tests of this binary open transactions meanwhile).
    assert!(stats["0"]["ongoingTxnSize"].is_u64(), "{stats}");

    // The service URL serves the binary protocol: a transactional client connects to each
    // coordinator there.
    let (port, _) = pulsar.ports();
    for id in 0..u64::from(count) {
        pulsar::connect_transaction_coordinator(&pulsar.ip, port, id)
            .unwrap_or_else(|e| panic!("coordinator {id} at {}: {e}", pulsar.service_url));
    }
}
