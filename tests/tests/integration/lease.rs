//! Leader election on a real Lease: one holder at a time, a successor once it lets go or stops
//! renewing.

use std::time::Duration;

use exactly::lease::Election;
use exactly_testenv::{eventually, shared};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

fn election(ns: &str, identity: &str) -> Election {
    Election {
        duration: Duration::from_secs(3),
        renew: Duration::from_millis(500),
        ..Election::new(ns, "exactly-operator", identity)
    }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt("exactly-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn a_second_candidate_waits_while_the_leader_holds_the_lease_and_takes_it_when_released() {
    let env = shared();
    let ns = env.namespace("lease-release").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let first = election(&ns.name, "replica-a")
        .acquire(client.clone())
        .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    let second = tokio::spawn(election(&ns.name, "replica-b").acquire(client.clone()));
    // Several renewals of the first leader's lease go by: the second must still be waiting.
    let renewals = tokio::time::timeout(Duration::from_secs(4), first.lost()).await;
    assert!(
        renewals.is_err(),
        "the leader lost its lease while renewing it"
    );
    assert!(!second.is_finished(), "two replicas held the lease at once");
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    first.release().await;
    let _second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .unwrap_or_else(|_| panic!("the second candidate never took the released lease"));
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
}

#[tokio::test]
async fn a_lease_left_unrenewed_is_taken_over_after_it_expires() {
    let env = shared();
    let ns = env.namespace("lease-expire").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    // The first leader "crashes": it never renews nor releases.
    let crashed = election(&ns.name, "replica-a")
        .acquire(client.clone())
        .await;
    drop(crashed);
    let last_renewal = leases
        .get("exactly-operator")
        .await
        .unwrap_or_else(|e| panic!("the lease: {e}"))
        .spec
        .and_then(|s| s.renew_time)
        .unwrap_or_else(|| panic!("the first leader's lease has no renewTime"));
    let _second = election(&ns.name, "replica-b")
        .acquire(client.clone())
        .await;
    let lease = eventually(
        "the lease to change hands",
        Duration::from_secs(20),
        || async {
            match leases.get("exactly-operator").await {
                Ok(l)
                    if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        == Some("replica-b") =>
                {
                    Ok(l)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(spec.lease_transitions, Some(1));
    // Not before it expired: the takeover came at least one lease duration (3 s) after the
    // crashed leader's last renewal.
    let taken = spec
        .acquire_time
        .unwrap_or_else(|| panic!("the taken-over lease has no acquireTime"));
    let waited = taken.0.as_millisecond() - last_renewal.0.as_millisecond();
    assert!(
        waited >= 3_000,
        "taken over {waited} ms after the last renewal, before the 3 s lease expired"
    );
}
