//! A refresh of idle Topics at scale (issue #10): 1 000 Topics, Ready and unchanged, are
//! refreshed for a minute without a status write, a reconcile or a Kafka mutation. Here rather
//! than in the integration binary: creating 1 000 topics at once slows the single broker for
//! every test running beside it, so this one holds the broker alone.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::Topic;
use exactly_testenv::shared;
use kube::ResourceExt;
use kube::api::ListParams;

use crate::support::{Operator, REFRESH, create_cluster, create_topics_at_once, mutations};

#[tokio::test]
async fn a_thousand_idle_topics_are_refreshed_without_a_write_a_reconcile_or_a_kafka_mutation() {
    const N: usize = 1000;
    const QUIET_FOR: Duration = Duration::from_secs(60);
    // 1 000 topics created at once slow the one broker for every test beside them.
    let _alone = crate::common::BROKER.write().await;
    let env = shared();
    let ns = env.namespace("quiet-1000").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topics = create_topics_at_once(&client, &ns, "q", N, Duration::from_secs(300)).await;
    tokio::time::sleep(REFRESH * 3).await;

    let versions = |list: Vec<Topic>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|t| (t.name_any(), t.resource_version().unwrap_or_default()))
            .collect()
    };
    let list = || async {
        topics
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .items
    };
    let before = versions(list().await);
    let reconciles = operator.ok_reconciles("Topic");
    let mutated = mutations(&operator);
    let described = operator.metrics.kafka_requests_of("DescribeConfigs");
    tokio::time::sleep(QUIET_FOR).await;
    let after = versions(list().await);

    let changed: Vec<&String> = before
        .iter()
        .filter(|(name, version)| after.get(*name) != Some(version))
        .map(|(name, _)| name)
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {N} Topics were written while nothing changed, e.g. {:?}",
        changed.len(),
        changed.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        operator.ok_reconciles("Topic"),
        reconciles,
        "refreshes reconciled Topics"
    );
    assert_eq!(mutations(&operator), mutated, "refreshes changed Kafka");
    // The refreshes did look: the drift check read the topics' configuration in batches.
    let reads = operator.metrics.kafka_requests_of("DescribeConfigs") - described;
    let refreshes = QUIET_FOR.as_secs() / REFRESH.as_secs();
    assert!(reads > 0, "no refresh read the topics' configuration");
    assert!(
        reads <= refreshes * (N as u64 / 200 + 1) * 2,
        "{reads} DescribeConfigs requests over {refreshes} refreshes of {N} Topics"
    );
    operator.stop().await;
}
