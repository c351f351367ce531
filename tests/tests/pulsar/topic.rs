//! Tenants, namespaces and partitioned topics through the admin REST API, with deduplication
//! read back at each level (broker, namespace, topic policy).

use std::time::Duration;

use exactly_testenv::pulsar::{self, CLUSTER};

use crate::{eventually, get, request};

#[test]
fn a_partitioned_topic_is_created_and_its_deduplication_policy_reads_back() {
    let pulsar = pulsar::shared();
    let tenant = pulsar.tenant("dedup").unwrap_or_else(|e| panic!("{e}"));
    let t = &tenant.name;

    let info = get(pulsar, &format!("/admin/v2/tenants/{t}"), 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info["allowedClusters"], serde_json::json!([CLUSTER]));

    request(
        pulsar,
        "PUT",
        &format!("/admin/v2/namespaces/{t}/orders"),
        None,
        204,
    );
    let namespaces = get(pulsar, &format!("/admin/v2/namespaces/{t}"), 200);
    assert_eq!(
        namespaces.json().ok(),
        Some(serde_json::json!([format!("{t}/orders")]))
    );

    let topic = format!("/admin/v2/persistent/{t}/orders/payments");
    request(
        pulsar,
        "PUT",
        &format!("{topic}/partitions"),
        Some("3"),
        204,
    );
    let metadata = get(pulsar, &format!("{topic}/partitions"), 200);
    assert_eq!(
        metadata.json().ok().map(|m| m["partitions"].clone()),
        Some(3.into())
    );

    // On before any policy says so: the broker-wide brokerDeduplicationEnabled applies.
    let dedup = format!("{topic}/deduplicationEnabled");
    assert_eq!(
        get(pulsar, &format!("{dedup}?applied=true"), 200)
            .body
            .trim(),
        "true"
    );
    // No topic-level policy yet: an empty answer.
    assert_eq!(get(pulsar, &dedup, 200).body.trim(), "");

    // Namespace level.
    let ns_dedup = format!("/admin/v2/namespaces/{t}/orders/deduplication");
    request(pulsar, "POST", &ns_dedup, Some("true"), 204);
    assert_eq!(get(pulsar, &ns_dedup, 200).body.trim(), "true");

    // Topic level (a topic policy, kept in the namespace's system topic and read back from it):
    // off, as a drift behind the operator's back would be, then on again.
    for value in ["false", "true"] {
        request(pulsar, "POST", &dedup, Some(value), 204);
        eventually(
            &format!("topic-level deduplication {value}"),
            Duration::from_secs(30),
            || {
                let set = get(pulsar, &dedup, 200).body.trim().to_string();
                let applied = get(pulsar, &format!("{dedup}?applied=true"), 200);
                match (set.as_str(), applied.body.trim()) {
                    (s, a) if s == value && a == value => Ok(()),
                    (s, a) => Err(format!("set {s:?}, applied {a:?}")),
                }
            },
        );
    }
}

#[test]
fn partitions_grow_and_a_decrease_is_refused() {
    let pulsar = pulsar::shared();
    let tenant = pulsar.tenant("grow").unwrap_or_else(|e| panic!("{e}"));
    let t = &tenant.name;
    request(
        pulsar,
        "PUT",
        &format!("/admin/v2/namespaces/{t}/ledger"),
        None,
        204,
    );
    let partitions = format!("/admin/v2/persistent/{t}/ledger/transfers/partitions");
    request(pulsar, "PUT", &partitions, Some("2"), 204);

    request(pulsar, "POST", &partitions, Some("4"), 204);
    let refused = pulsar
        .admin("POST", &partitions, Some("3"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status, 422, "{refused}");
    assert!(refused.body.contains("can't be less than"), "{refused}");

    let metadata = get(pulsar, &partitions, 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metadata["partitions"], 4, "{metadata}");
}
