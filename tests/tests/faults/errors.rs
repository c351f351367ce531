//! The error policies, with real worker processes on the real broker: a record the transform
//! rejects goes to the dead-letter Topic in the same transaction as its input offset (no loss,
//! no duplicate there either, through SIGKILLs), or, under `Stop`, the pipeline commits exactly
//! up to it and says where and why in the metadata it commits with the offset, so the operator
//! can name it without reaching the worker.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::Pipeline;
use exactly::kafka::{TopicPartition, WireClient};
use exactly_testenv::{eventually, shared};
use exactly_worker::config::ErrorPolicy;
use exactly_worker::decide::{
    HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
use exactly_worker::{Progress, WorkerConfig};
use kube::api::{Api, Patch, PatchParams};

use crate::common::{
    EXACTLY_ONCE, Record, Rng, Workers, create_topics, drained, produce_records, read_all,
    rendered_config, tally_of, test_dir,
};
use crate::support::{create, create_cluster, run_operator, wire};

/// The transform of both tests: it needs a JSON value, so a value that is not JSON is a record
/// error.
const FILTER: &str = "{id: .id, doubled: (.amount * 2)}";

/// The value of input record `id`: JSON, except where `bad(id)`.
fn value(id: u64, bad: bool) -> String {
    if bad {
        format!("not JSON, record {id}")
    } else {
        format!("{{\"id\":{id},\"amount\":{}}}", id % 1000)
    }
}

/// The `id` of a record keyed `k<id>`.
fn id_of_key(record: &Record) -> u64 {
    record
        .key_text()
        .strip_prefix('k')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a record whose key is not k<id>: {record:?}"))
}

/// The `id` of a transform output, checking it is the transform's output.
fn id_of_output(record: &Record) -> u64 {
    let value = record
        .json()
        .unwrap_or_else(|| panic!("an output record that is not JSON: {record:?}"));
    let id = value["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("an output record without an id: {value}"));
    assert_eq!(
        value["doubled"].as_u64(),
        Some((id % 1000) * 2),
        "the transform's output for {id}"
    );
    id
}

/// The committed offset and progress metadata of `topic`-`partition` in `group`.
async fn committed_progress(
    w: &WireClient,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<(i64, Progress), String> {
    let groups = w
        .committed_of_groups(&[group.to_string()])
        .await
        .map_err(|e| e.to_string())?;
    let (offset, metadata) = groups
        .get(group)
        .and_then(|offsets| offsets.get(&TopicPartition::new(topic.to_string(), partition)))
        .cloned()
        .ok_or_else(|| format!("{group} has no committed offset for {topic}-{partition}"))?;
    let progress = Progress::decode(&metadata)
        .ok_or_else(|| format!("metadata of {topic}-{partition} is not progress: {metadata:?}"))?;
    Ok((offset, progress))
}

/// The progress committed for `input`-0 once it is stopped at offset `at` with a marker
/// starting with `prefix`.
async fn stopped_at(
    w: &WireClient,
    group: &str,
    input: &str,
    at: i64,
    prefix: &str,
) -> Result<Progress, String> {
    let (offset, progress) = committed_progress(w, group, input, 0).await?;
    match progress.stopped() {
        Some(stop) if offset == at && stop.starts_with(prefix) => Ok(progress),
        _ => Err(format!("committed {offset} with {}", progress.encode())),
    }
}

/// Writes the rendered configuration where the workers read it; returns it parsed.
fn write_config(path: &std::path::Path, config: &[u8]) -> WorkerConfig {
    std::fs::write(path, config).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(config).unwrap_or_else(|e| panic!("the rendered pipeline.json: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_transform_rejects_goes_to_the_dead_letter_topic_in_the_same_transaction_as_its_offset()
 {
    let _broker = crate::common::BROKER.read().await;
    const RECORDS: u64 = 20_000;
    const BAD_EVERY: u64 = 97;
    const PARTITIONS: i32 = 3;
    const WORKERS: usize = 2;
    const KILLS: usize = 6;
    let bad = |id: u64| id.is_multiple_of(BAD_EVERY);

    let env = shared();
    let ns = env.namespace("errors").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let input = ns.unique("orders");
    let output = ns.unique("charges");
    let dead = ns.unique("rejected");
    create_topics(
        &client,
        &ns,
        &[
            ("orders", &input, PARTITIONS),
            ("charges", &output, PARTITIONS),
            ("rejected", &dead, 1),
        ],
    )
    .await;
    create::<Pipeline>(
        &client,
        &ns,
        "rejecting",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            // A group of this test alone (the default, the Pipeline's name, is not unique
            // across namespaces).
            "input": {"topics": [{"name": "orders"}], "groupId": ns.unique("rejecting")},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": WORKERS,
            "transform": {"type": "Jq", "jq": {"filter": FILTER}},
            "errorPolicy": {"action": "DeadLetter", "deadLetterTopicRef": {"name": "rejected"}},
        }),
    )
    .await;

    let dir = test_dir(&ns);
    let config_path = dir.join("pipeline.json");
    let config = write_config(
        &config_path,
        &rendered_config(&client, &ns, "rejecting", None).await,
    );
    // The dead-letter topic is the Topic resource the Pipeline names.
    assert_eq!(
        config.error_policy,
        ErrorPolicy::DeadLetter {
            topic: dead.clone()
        }
    );
    let seed = Rng::seed();
    eprintln!(
        "fault schedule seed {seed:#x}; worker logs in {}",
        dir.display()
    );
    let mut rng = Rng(seed);
    let mut workers = Workers::new(config_path, dir.clone(), WORKERS);
    let producing = produce_records(
        env.bootstrap_servers.clone(),
        input.clone(),
        RECORDS,
        500,
        move |id| value(id, bad(id)),
    );
    // SIGKILL a random worker at random moments while records flow, restarting it at once.
    let faults = tokio::task::spawn_blocking(move || {
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
            let ordinal = rng.below(WORKERS as u64) as usize;
            workers.kill(ordinal);
            workers.start(ordinal);
        }
        workers
    });
    let mut workers = faults
        .await
        .unwrap_or_else(|e| panic!("the fault schedule: {e}"));
    tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));

    let w = wire(env);
    drained(
        &w,
        &config.group_id,
        &input,
        PARTITIONS,
        Duration::from_secs(90),
    )
    .await;
    let exited = workers.exited();
    assert!(exited.is_empty(), "workers exited on their own: {exited:?}");
    let codes = workers.stop();
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "workers did not exit cleanly on SIGTERM: {codes:?}"
    );

    // The independent check: the input as written, the output and the dead letters as a
    // read_committed reader sees them.
    let inputs: BTreeMap<(i32, i64), Record> = read_all(env, &input, PARTITIONS, "read_committed")
        .into_iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    assert_eq!(inputs.len() as u64, RECORDS, "the input as written");
    let good: Vec<u64> = (0..RECORDS).filter(|id| !bad(*id)).collect();
    let rejected: Vec<u64> = (0..RECORDS).filter(|id| bad(*id)).collect();

    let outputs = read_all(env, &output, PARTITIONS, "read_committed");
    let output_ids: Vec<u64> = outputs.iter().map(id_of_output).collect();
    let out_tally = tally_of(&output_ids, &good);

    let letters = read_all(env, &dead, 1, "read_committed");
    let mut letter_ids = Vec::new();
    for letter in &letters {
        let id = id_of_key(letter);
        let from = (
            letter.header(HEADER_SOURCE_TOPIC),
            letter
                .header(HEADER_SOURCE_PARTITION)
                .and_then(|p| p.parse::<i32>().ok()),
            letter
                .header(HEADER_SOURCE_OFFSET)
                .and_then(|o| o.parse::<i64>().ok()),
        );
        let (Some(topic), Some(partition), Some(offset)) = from.clone() else {
            panic!("a dead letter without its source headers: {letter:?}");
        };
        assert_eq!(topic, input, "exactly.source.topic of k{id}");
        let source = inputs.get(&(partition, offset)).unwrap_or_else(|| {
            panic!("dead letter k{id} points at {topic}-{partition}@{offset}, not in the input")
        });
        assert_eq!(
            (&source.key, &source.value),
            (&letter.key, &letter.value),
            "dead letter k{id} is not the input record at {topic}-{partition}@{offset}"
        );
        let error = letter.header(HEADER_ERROR).unwrap_or_default();
        assert!(
            error.starts_with("the value is not JSON"),
            "exactly.error of k{id}: {error:?}"
        );
        letter_ids.push(id);
    }
    let dead_tally = tally_of(&letter_ids, &rejected);
    let uncommitted_letters = read_all(env, &dead, 1, "read_uncommitted").len();
    eprintln!(
        "{KILLS} kills: read_committed read {} outputs ({out_tally:?}) and {} dead letters \
         ({dead_tally:?}); read_uncommitted reads {uncommitted_letters} dead letters",
        outputs.len(),
        letters.len(),
    );
    assert_eq!(out_tally, EXACTLY_ONCE, "every JSON record exactly once");
    assert_eq!(
        dead_tally, EXACTLY_ONCE,
        "every rejected record exactly once in the dead-letter topic"
    );

    // The Pipeline's own figures agree.
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let expected = (
        Some(0),
        Some(RECORDS as i64),
        Some(good.len() as i64),
        Some(rejected.len() as i64),
    );
    eventually(
        "the Pipeline's figures to agree",
        Duration::from_secs(60),
        || async {
            let p = pipelines
                .get("rejecting")
                .await
                .map_err(|e| e.to_string())?;
            let s = p.status.unwrap_or_default();
            let figures = (s.total_lag, s.records_in, s.records_out, s.dead_lettered);
            if figures == expected {
                Ok(())
            } else {
                Err(format!(
                    "(totalLag, recordsIn, recordsOut, deadLettered) = {figures:?}, want \
                     {expected:?}"
                ))
            }
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stop_policy_the_pipeline_stops_at_the_rejected_record_and_commits_nothing_past_it()
 {
    let _broker = crate::common::BROKER.read().await;
    const RECORDS: u64 = 400;
    const BAD: u64 = 250;

    let env = shared();
    let ns = env.namespace("errors").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let input = ns.unique("orders");
    let output = ns.unique("charges");
    create_topics(
        &client,
        &ns,
        &[("orders", &input, 1), ("charges", &output, 1)],
    )
    .await;
    create::<Pipeline>(
        &client,
        &ns,
        "stopping",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}], "groupId": ns.unique("stopping")},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": 1,
            "transform": {"type": "Jq", "jq": {"filter": FILTER}},
            "errorPolicy": {"action": "Stop"},
        }),
    )
    .await;
    // The input, whole, before any worker runs: the rejected record's offset is known.
    tokio::task::spawn_blocking({
        let (bootstrap, input) = (env.bootstrap_servers.clone(), input.clone());
        move || produce_records(bootstrap, input, RECORDS, 1_000, |id| value(id, id == BAD)).join()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|_| panic!("the input producer panicked"));
    let inputs = read_all(env, &input, 1, "read_committed");
    let at = inputs
        .iter()
        .find(|r| id_of_key(r) == BAD)
        .map(|r| r.offset)
        .unwrap_or_else(|| panic!("k{BAD} is not in the input"));
    let end = inputs.last().map_or(0, |r| r.offset + 1);

    let dir = test_dir(&ns);
    let config_path = dir.join("pipeline.json");
    let rendered = rendered_config(&client, &ns, "stopping", None).await;
    let config = write_config(&config_path, &rendered);
    assert_eq!(config.error_policy, ErrorPolicy::Stop);
    let group = config.group_id.clone();
    eprintln!("worker logs in {}", dir.display());
    let mut workers = Workers::new(config_path.clone(), dir.clone(), 1);

    // It stops: the committed offset is the rejected record's, and the metadata says why.
    let w = wire(env);
    let prefix = format!("{input}-0@{at}: the value is not JSON");
    let first = eventually(
        "the worker to stop at the rejected record",
        Duration::from_secs(45),
        || stopped_at(&w, &group, &input, at, &prefix),
    )
    .await;
    eprintln!("stopped: {}", first.encode());
    let parts = first
        .stop_parts()
        .unwrap_or_else(|| panic!("a stop marker not in the worker's format: {first:?}"));
    assert_eq!(
        (parts.topic, parts.partition, parts.offset),
        (input.as_str(), 0, at)
    );
    assert_eq!(
        (first.in_records, first.out_records, first.dead_lettered),
        (at as u64, at as u64, 0),
        "the figures count exactly the records before the rejected one"
    );
    // And stays stopped, up and unready, committing nothing past it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (offset, progress) = committed_progress(&w, &group, &input, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (offset, &progress),
        (at, &first),
        "nothing committed past it"
    );
    let exited = workers.exited();
    assert!(exited.is_empty(), "the stopped worker exited: {exited:?}");
    let ids: Vec<u64> = read_all(env, &output, 1, "read_committed")
        .iter()
        .map(id_of_output)
        .collect();
    assert_eq!(
        tally_of(&ids, &(0..BAD).collect::<Vec<_>>()),
        EXACTLY_ONCE,
        "the output is exactly the records before the rejected one"
    );
    // The operator, which cannot reach the worker, names the record and the reason in status.
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let marker = first.stopped().unwrap_or_default().to_string();
    let stopped_at_in_status = || async {
        let p = pipelines.get("stopping").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(p.status.unwrap_or_default().stopped_at)
    };
    eventually(
        "the Pipeline's status.stoppedAt to name the record",
        Duration::from_secs(30),
        || async {
            match stopped_at_in_status().await? {
                Some(stopped) if stopped == marker => Ok(()),
                other => Err(format!("stoppedAt = {other:?}, want {marker:?}")),
            }
        },
    )
    .await;

    // Restarted as it is, the worker stops again at the same record: the marker is renewed by
    // a new commit (one more transaction), the offset does not move.
    let codes = workers.stop();
    assert_eq!(codes, vec![Some(0)], "the stopped worker on SIGTERM");
    workers.start(0);
    let again = eventually(
        "the restarted worker to stop again at the same record",
        Duration::from_secs(45),
        || async {
            let progress = stopped_at(&w, &group, &input, at, &prefix).await?;
            if progress.transactions > first.transactions {
                Ok(progress)
            } else {
                Err(format!("not committed again yet: {}", progress.encode()))
            }
        },
    )
    .await;
    assert_eq!(
        (again.in_records, again.out_records),
        (first.in_records, first.out_records)
    );

    // Fixed (a transform that takes any value), the pipeline goes on, and the next commit of
    // the partition clears the marker.
    pipelines
        .patch(
            "stopping",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"transform": {"type": "Passthrough", "jq": null}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("fixing the Pipeline: {e}"));
    let fixed = rendered_config(&client, &ns, "stopping", Some(&rendered)).await;
    let codes = workers.stop();
    assert_eq!(codes, vec![Some(0)], "the stopped worker on SIGTERM");
    write_config(&config_path, &fixed);
    workers.start(0);
    drained(&w, &group, &input, 1, Duration::from_secs(45)).await;
    let (offset, progress) = committed_progress(&w, &group, &input, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(offset, end);
    assert_eq!(
        progress.stopped(),
        None,
        "the marker outlived the fix: {progress:?}"
    );
    assert_eq!(
        (progress.in_records, progress.out_records),
        (RECORDS, RECORDS)
    );
    eventually(
        "the Pipeline's status.stoppedAt to go",
        Duration::from_secs(30),
        || async {
            match stopped_at_in_status().await? {
                None => Ok(()),
                Some(stopped) => Err(format!("stoppedAt = {stopped:?}")),
            }
        },
    )
    .await;
    let codes = workers.stop();
    assert_eq!(codes, vec![Some(0)], "the worker on SIGTERM");
    // Every run stopped on SIGTERM and logged its own counts: the status, summed from the
    // committed metadata, says the same.
    let counted = workers.stopped_transaction_counts();
    assert!(counted.0 >= 3, "three runs, each committing: {counted:?}");
    eventually(
        "status.transactionsCommitted/Aborted to match the workers' own counts",
        Duration::from_secs(30),
        || async {
            let p = pipelines.get("stopping").await.map_err(|e| e.to_string())?;
            let s = p.status.unwrap_or_default();
            let status = (s.transactions_committed, s.transactions_aborted);
            let want = (i64::try_from(counted.0).ok(), i64::try_from(counted.1).ok());
            if status == want {
                Ok(())
            } else {
                Err(format!("status {status:?}, the workers' logs {want:?}"))
            }
        },
    )
    .await;
    let keys: Vec<u64> = read_all(env, &output, 1, "read_committed")
        .iter()
        .map(id_of_key)
        .collect();
    assert_eq!(
        tally_of(&keys, &(0..RECORDS).collect::<Vec<_>>()),
        EXACTLY_ONCE,
        "every record once: those before the stop through the first transform, the rest after \
         the fix"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
