//! kube-apiserver restarted under a running operator (issue #11): the operator recovers without
//! a restart of its own, and a change made just before the outage and one made just after it
//! both reach the broker within seconds of the API server's return.

use std::time::{Duration, Instant};

use exactly::api::Topic;
use exactly_testenv::{eventually, shared};
use kube::api::{Patch, PatchParams};

use crate::support::{Operator, broker_partitions, create, create_cluster, ready_of};

/// How long kube-apiserver stays down.
const DOWN_FOR: Duration = Duration::from_secs(5);

#[tokio::test]
async fn after_a_kube_apiserver_restart_the_operator_applies_changes_made_around_it_within_seconds()
{
    // Every client of the environment loses the API server: alone for the whole run.
    let _alone = crate::common::BROKER.write().await;
    let env = shared();
    let ns = env.namespace("apiserver").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let orders = ns.unique("orders");
    let payments = ns.unique("payments");
    let topics = create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": orders, "partitions": 1}),
    )
    .await;
    let ready = |name: &'static str, within: Duration| {
        let topics = topics.clone();
        async move {
            eventually(&format!("Topic {name} Ready"), within, || async {
                let topic = topics.get(name).await.map_err(|e| e.to_string())?;
                match ready_of(&topic) {
                    Some((status, _, generation))
                        if status == "True" && generation == topic.metadata.generation =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            })
            .await
        }
    };
    ready("orders", Duration::from_secs(60)).await;

    // A change the operator may or may not see before the API server goes.
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"partitions": 3}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch orders: {e}"));
    tokio::task::spawn_blocking(move || env.restart_apiserver(DOWN_FOR))
        .await
        .unwrap_or_else(|e| panic!("the restart task: {e}"))
        .unwrap_or_else(|e| panic!("restarting kube-apiserver: {e}"));
    let back_at = Instant::now();

    // A change made as soon as it is back.
    create::<Topic>(
        &client,
        &ns,
        "payments",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": payments, "partitions": 2}),
    )
    .await;
    let within = Duration::from_secs(10);
    eventually("both changes on the broker", within, || async {
        let found = (
            broker_partitions(env, &orders),
            broker_partitions(env, &payments),
        );
        if found == (Some(3), Some(2)) {
            Ok(())
        } else {
            Err(format!("partitions of (orders, payments): {found:?}"))
        }
    })
    .await;
    ready("orders", within).await;
    ready("payments", within).await;
    eprintln!(
        "both changes applied and reported {:.1} s after kube-apiserver answered again",
        back_at.elapsed().as_secs_f64()
    );
    operator.stop().await;
}
