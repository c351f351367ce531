//! Schema fuzzing through the real API server (issue #11): random specs of every kind, drawn from
//! the CRDs' own schemas and bent out of shape at random (wrong types, out-of-range numbers,
//! durations in every form, empty and overlong strings, unknown keys), are sent with server-side
//! dry run. Every rejection names the field it is about; every spec the API server accepts is
//! one the operator can read back into its types, and its planners and renderers take it without
//! a panic (they may refuse it, with a reason).

use std::collections::BTreeMap;
use std::path::PathBuf;

use exactly::api::{ConsumerGroup, KafkaCluster, Pipeline, Producer, Topic};
use exactly::controller::{group, pipeline, producer_config, provision, topic};
use exactly::kafka::TopicDescription;
use exactly_testenv::shared;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value, json};

/// Random specs sent per kind.
const CASES: usize = 400;

/// A small deterministic generator, so that a failing run can be replayed from its seed
/// (`EXACTLY_FUZZ_SEED`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Strings that probe the schema's rules: names, durations in every form, enum-like words,
/// numbers as text, empty, overlong and non-ASCII.
const STRINGS: &[&str] = &[
    "",
    "a",
    "local",
    "orders",
    "orders-v2",
    "Orders",
    "my.topic_1",
    "-bad",
    "ends-",
    "..",
    "0",
    "5",
    "-1",
    "1e9",
    "500ms",
    "90s",
    "15m",
    "2h",
    "1h30m",
    "1.5h",
    "-1s",
    "1d",
    "10us",
    "2562047h",
    "99999999999999999999h",
    "true",
    "all",
    "1",
    "gzip",
    "Delete",
    "Retain",
    "Revert",
    "Report",
    "ReadCommitted",
    "kafka-0.kafka:9092",
    "ä",
    "a\nb",
    "${x}",
];

const INTEGERS: &[i64] = &[
    -2_147_483_649,
    -1,
    0,
    1,
    2,
    3,
    5,
    100,
    10_000,
    2_147_483_647,
    2_147_483_648,
    i64::MAX,
];

/// A value for `schema`: mostly of its type (from its enum when it has one), sometimes not.
fn value(rng: &mut Rng, schema: &Value, depth: usize) -> Value {
    if rng.chance(6) {
        return wild(rng);
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.is_empty()
        && rng.chance(85)
    {
        return rng.pick(choices).clone();
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return if rng.chance(50) {
            json!(*rng.pick(INTEGERS))
        } else {
            json!(*rng.pick(STRINGS))
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object(rng, schema, depth),
        Some("array") => {
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            let n = if depth > 6 { 0 } else { rng.below(4) };
            Value::Array((0..n).map(|_| value(rng, &items, depth + 1)).collect())
        }
        Some("string") => json!(*rng.pick(STRINGS)),
        Some("integer") => json!(*rng.pick(INTEGERS)),
        Some("number") => json!(*rng.pick(&[-1.5, 0.0, 0.5, 1.0, 1e12])),
        Some("boolean") => json!(rng.chance(50)),
        _ => wild(rng),
    }
}

/// An object for `schema`: its required properties nearly always, the others half the time,
/// free-form maps with a few random entries, and now and then a key the schema does not know.
fn object(rng: &mut Rng, schema: &Value, depth: usize) -> Value {
    let mut out = Map::new();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let wanted = if required.contains(&name.as_str()) {
                rng.chance(95)
            } else {
                rng.chance(45)
            };
            if wanted && depth < 8 {
                out.insert(name.clone(), value(rng, property, depth + 1));
            }
        }
    }
    if let Some(additional) = schema.get("additionalProperties")
        && additional.is_object()
    {
        for _ in 0..rng.below(3) {
            let key =
                (*rng.pick(&["linger.ms", "acks", "retention.ms", "x", "", "a b"])).to_string();
            out.insert(key, value(rng, additional, depth + 1));
        }
    }
    if rng.chance(3) {
        out.insert("unknownField".into(), json!("x"));
    }
    Value::Object(out)
}

/// A value of any shape.
fn wild(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(*rng.pick(STRINGS)),
        2 => json!(*rng.pick(INTEGERS)),
        3 => json!(rng.chance(50)),
        4 => json!([]),
        _ => json!({}),
    }
}

/// Changes one random place of `spec` (a field of `schema`): a new value drawn from the schema
/// there, or the field removed.
fn mutate(rng: &mut Rng, spec: &mut Value, schema: &Value, depth: usize) {
    match spec {
        Value::Object(map) if !map.is_empty() && depth < 8 && rng.chance(70) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            if rng.chance(15) {
                map.remove(&key);
                return;
            }
            let sub = schema
                .pointer(&format!("/properties/{key}"))
                .or_else(|| schema.get("additionalProperties"))
                .cloned()
                .unwrap_or(json!({}));
            if let Some(v) = map.get_mut(&key) {
                mutate(rng, v, &sub, depth + 1);
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 8 && rng.chance(70) => {
            let i = rng.below(items.len());
            let sub = schema.get("items").cloned().unwrap_or(json!({}));
            mutate(rng, &mut items[i], &sub, depth + 1);
        }
        _ => *spec = value(rng, schema, depth),
    }
}

/// The specs of every example of `kind` in `examples/`: valid starting points to mutate.
fn example_specs(kind: &str) -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut specs = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for document in serde_norway::Deserializer::from_str(&text) {
            let Ok(object) = <Value as serde::Deserialize>::deserialize(document) else {
                continue;
            };
            if object.get("kind").and_then(Value::as_str) == Some(kind)
                && let Some(spec) = object.get("spec")
            {
                specs.push(spec.clone());
            }
        }
    }
    specs
}

/// The spec schema of the CRD in `crds/<plural>.exactly.dev.yaml`.
fn spec_schema(plural: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crds")
        .join(format!("{plural}.exactly.dev.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let crd: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .cloned()
        .unwrap_or_else(|| panic!("{}: no spec schema", path.display()))
}

/// Runs what the operator would run on an accepted spec, without a broker: each kind's pure
/// planners and renderers. They may refuse the spec; they must not panic (a panic fails the test).
fn plan(kind: &str, object: Value) -> Result<(), String> {
    fn read<K: serde::de::DeserializeOwned>(object: Value) -> Result<K, String> {
        serde_json::from_value(object)
            .map_err(|e| format!("accepted by the API server but unreadable by the operator: {e}"))
    }
    match kind {
        "Topic" => {
            let t: Topic = read(object)?;
            let _ = topic::plan_topic_change(&t, None);
            let observed = TopicDescription {
                name: "observed".into(),
                partitions: 3,
                replication_factor: 1,
                topic_id: None,
            };
            let _ = topic::plan_topic_change(&t, Some(&observed));
        }
        "Producer" => {
            let p: Producer = read(object)?;
            for instances in [1, 3] {
                let _ = producer_config::render(
                    &p.spec,
                    instances,
                    "kafka:9092",
                    900_000,
                    &Default::default(),
                );
            }
        }
        "ConsumerGroup" => {
            let g: ConsumerGroup = read(object)?;
            let _ = group::group_status(&g, &group::GroupObservation::default(), None, None);
        }
        "Pipeline" => {
            let p: Pipeline = read(object)?;
            let names: BTreeMap<String, String> = ["orders", "charges", "local", "a"]
                .into_iter()
                .map(|n| (n.to_string(), format!("kafka-{n}")))
                .collect();
            if let Ok(config) =
                pipeline::render_worker_config(&p, "kafka:9092", &BTreeMap::new(), &names)
            {
                let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
                let _ = pipeline::render_stateful_set(
                    &p,
                    &pipeline::Names::of("fuzzed"),
                    "exactly:test",
                    &json,
                );
            }
        }
        "KafkaCluster" => {
            let c: KafkaCluster = read(object)?;
            if let Some(spec) = &c.spec.provisioned {
                let _ = provision::broker_config(provision::data_nodes(spec), &spec.config);
            }
        }
        other => return Err(format!("no planner for {other}")),
    }
    Ok(())
}

#[tokio::test]
async fn random_specs_are_accepted_and_planned_or_rejected_naming_the_field() {
    let env = shared();
    let ns = env.namespace("fuzz").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let seed = std::env::var("EXACTLY_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 | 1)
                .unwrap_or(0x2545_f491_4f6c_dd1d)
        });
    eprintln!("schema fuzzing seed {seed:#x} (EXACTLY_FUZZ_SEED={seed:x} replays it)");
    let mut rng = Rng(seed);
    let mut problems = Vec::new();
    for (kind, plural) in [
        ("Topic", "topics"),
        ("Producer", "producers"),
        ("ConsumerGroup", "consumergroups"),
        ("Pipeline", "pipelines"),
        ("KafkaCluster", "kafkaclusters"),
    ] {
        let schema = spec_schema(plural);
        let examples = example_specs(kind);
        assert!(!examples.is_empty(), "no example of {kind} in examples/");
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("exactly.dev", "v1alpha1", kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let (mut accepted, mut rejected) = (0, 0);
        for case in 0..CASES {
            // Half from the schema alone, half an example with a few changes (none at times).
            let spec = if rng.chance(50) {
                object(&mut rng, &schema, 0)
            } else {
                let mut spec = rng.pick(&examples).clone();
                for _ in 0..rng.below(4) {
                    mutate(&mut rng, &mut spec, &schema, 0);
                }
                spec
            };
            let manifest = json!({
                "apiVersion": "exactly.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": format!("fuzz-{case}")},
                "spec": spec,
            });
            let object: DynamicObject = serde_json::from_value(manifest.clone())
                .unwrap_or_else(|e| panic!("manifest: {e}"));
            match api.create(&dry_run, &object).await {
                Ok(created) => {
                    accepted += 1;
                    let created = serde_json::to_value(&created)
                        .unwrap_or_else(|e| panic!("serializing {kind}: {e}"));
                    if let Err(e) = plan(kind, created) {
                        problems.push(format!("{kind} {spec}: {e}"));
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                    rejected += 1;
                    if rejected <= 3 {
                        eprintln!("  e.g. {kind} rejected: {}", status.message);
                    }
                    if !status.message.contains("spec") {
                        problems.push(format!(
                            "{kind} {spec}: rejected without naming a field: {}",
                            status.message
                        ));
                    }
                }
                Err(e) => problems.push(format!("{kind} {spec}: {e}")),
            }
        }
        eprintln!("{kind}: {accepted} accepted, {rejected} rejected of {CASES}");
        // Both sides exercised: a fuzzer that only ever makes invalid (or valid) specs checks
        // half of what it claims.
        assert!(
            accepted > 0 && rejected > 0,
            "{kind}: {accepted} accepted and {rejected} rejected; the generator needs tuning"
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) (seed {seed:#x}), e.g.:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
