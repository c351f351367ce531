//! A broker outage (issue #11): the broker stops for a minute under a KafkaCluster with a Topic,
//! a Producer and a ConsumerGroup, all Ready. The cluster says `KafkaUnreachable` and every
//! dependent resource says why; the operator backs off rather than retrying in a loop; when the
//! broker is back everything is Ready again within seconds, with no Kafka mutation repeated.

use std::time::{Duration, Instant};

use exactly::api::conditions::types::READY;
use exactly::api::{Condition, ConsumerGroup, KafkaCluster, Producer, Topic};
use exactly_testenv::{eventually, shared};
use kube::Client;
use kube::api::Api;

use crate::support::{Operator, REFRESH, condition, create, create_cluster, log_lines, mutations};

/// How long the broker stays down.
const DOWN_FOR: Duration = Duration::from_secs(60);

/// Reconciles of `kind` the operator ran, whatever their result.
fn reconciles(operator: &Operator, kind: &str) -> u64 {
    let prefix = format!("exactly_reconciles_total{{kind=\"{kind}\",");
    operator
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The `Ready` condition of each resource of the test, by kind, as (status, reason, message).
async fn readiness(
    client: &Client,
    namespace: &str,
) -> Vec<(&'static str, (String, String, String))> {
    async fn ready_of<K>(client: &Client, namespace: &str, name: &str) -> (String, String, String)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K: HasConditions,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(object)) => condition(object.conditions(), READY)
                .unwrap_or_else(|| ("None".into(), String::new(), String::new())),
            Ok(None) => ("Missing".into(), String::new(), String::new()),
            Err(e) => ("ApiError".into(), String::new(), e.to_string()),
        }
    }
    vec![
        (
            "KafkaCluster",
            ready_of::<KafkaCluster>(client, namespace, "local").await,
        ),
        (
            "Topic",
            ready_of::<Topic>(client, namespace, "orders").await,
        ),
        (
            "Producer",
            ready_of::<Producer>(client, namespace, "writer").await,
        ),
        (
            "ConsumerGroup",
            ready_of::<ConsumerGroup>(client, namespace, "billing").await,
        ),
    ]
}

/// The conditions of a resource's status, empty before its first status.
trait HasConditions {
    fn conditions(&self) -> &[Condition];
}

macro_rules! has_conditions {
    ($($kind:ty),*) => {$(
        impl HasConditions for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
            }
        }
    )*};
}
has_conditions!(KafkaCluster, Topic, Producer, ConsumerGroup);

#[tokio::test]
async fn a_broker_down_for_a_minute_is_reported_on_every_resource_without_a_retry_storm_and_all_are_ready_soon_after_it_returns()
 {
    // The outage hits every test of the binary: alone for the whole run.
    let _alone = crate::common::BROKER.write().await;
    let env = shared();
    let ns = env.namespace("outage").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("orders"),
            "partitions": 3}),
    )
    .await;
    create::<Producer>(
        &client,
        &ns,
        "writer",
        serde_json::json!({"clusterRef": {"name": "local"}, "topics": [{"name": "orders"}],
            "transactionalIdPrefix": ns.unique("writer")}),
    )
    .await;
    create::<ConsumerGroup>(
        &client,
        &ns,
        "billing",
        serde_json::json!({"clusterRef": {"name": "local"}, "groupId": ns.unique("billing"),
            "topics": [{"name": "orders"}], "isolation": "ReadCommitted"}),
    )
    .await;
    let all_ready = |what: &'static str, within: Duration| {
        let client = client.clone();
        let namespace = ns.name.clone();
        async move {
            eventually(what, within, || async {
                let now = readiness(&client, &namespace).await;
                if now.iter().all(|(_, (status, _, _))| status == "True") {
                    Ok(())
                } else {
                    Err(format!("{now:?}"))
                }
            })
            .await
        }
    };
    all_ready(
        "every resource Ready before the outage",
        Duration::from_secs(90),
    )
    .await;
    let mutated_before = mutations(&operator);

    // The broker goes (SIGTERM, as a node drain would) and comes back after DOWN_FOR.
    let stopped_at = Instant::now();
    let outage = tokio::task::spawn_blocking(move || env.restart_kafka(DOWN_FOR));

    // Each resource says why, well within the outage.
    let reported = eventually(
        "every resource to say the broker cannot be reached",
        Duration::from_secs(30),
        || async {
            let now = readiness(&client, &ns.name).await;
            let silent: Vec<_> = now
                .iter()
                .filter(|(_, (status, reason, message))| {
                    status != "False"
                        || !(reason.contains("Unreachable")
                            || message.to_lowercase().contains("unreachable")
                            || message.contains("cannot be reached"))
                })
                .collect();
            if silent.is_empty() {
                Ok(now)
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "{:.1} s after the broker stopped: {reported:#?}",
        stopped_at.elapsed().as_secs_f64()
    );
    let (cluster, (_, reason, _)) = &reported[0];
    assert_eq!(
        (*cluster, reason.as_str()),
        ("KafkaCluster", "KafkaUnreachable")
    );

    // Backoff, not a storm: over 30 s of the outage, a bounded number of reconciles (each
    // failing one logs a line) for the four resources.
    let kinds = ["KafkaCluster", "Topic", "Producer", "ConsumerGroup"];
    let count = |operator: &Operator| kinds.map(|k| reconciles(operator, k));
    let before = count(&operator);
    let lines_before = log_lines::of(&ns.name);
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let lines = log_lines::of(&ns.name) - lines_before;
    let during: Vec<u64> = count(&operator)
        .iter()
        .zip(before)
        .map(|(after, before)| after - before)
        .collect();
    eprintln!("reconciles in {window:?} of the outage, by kind {kinds:?}: {during:?}");
    // At most one reconcile per resource per refresh interval, and then some.
    let bound = 2 * (window.as_secs() / REFRESH.as_secs());
    for (kind, n) in kinds.iter().zip(&during) {
        assert!(
            *n <= bound,
            "{kind}: {n} reconciles in {window:?} while the broker was down (bound {bound})"
        );
    }
    // And its log: a line per failed reconcile, and one per refresh that finds the brokers
    // gone; the bound is that, twice over (21 lines measured against a bound of 54).
    let line_bound = 2 * (during.iter().sum::<u64>() + window.as_secs() / REFRESH.as_secs());
    eprintln!("log lines in {window:?} of the outage: {lines} (bound {line_bound})");
    assert!(
        lines <= line_bound,
        "{lines} log lines in {window:?} while the broker was down (bound {line_bound})"
    );

    outage
        .await
        .unwrap_or_else(|e| panic!("the outage task: {e}"))
        .unwrap_or_else(|e| panic!("restarting the broker: {e}"));
    let back_at = Instant::now();
    all_ready(
        "every resource Ready within 10 s of the broker's return",
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "all Ready {:.1} s after the broker answered again",
        back_at.elapsed().as_secs_f64()
    );
    assert_eq!(
        mutations(&operator),
        mutated_before,
        "a Kafka mutation was sent again after the outage"
    );
    operator.stop().await;
}
