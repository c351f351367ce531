//! The client configuration a Producer's instances get, and the overrides that would weaken it.
//! Pure functions: the Producer reconciler renders their result into the `<name>-client` Secret.

use std::collections::BTreeMap;

use crate::api::producer::TRANSACTION_TIMEOUT;
use crate::api::{Guarantee, ProducerSpec};

/// Kafka's own producer default (`transaction.timeout.ms`), used when the spec names none.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i64 = 60_000;
/// Most requests a producer may have in flight per connection with idempotence (KIP-98).
pub const MAX_IN_FLIGHT: i64 = 5;

/// Why a Producer's configuration cannot be rendered; each names the key and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigViolation {
    /// The offending key (a `clientOverrides` key, or the spec field).
    pub key: String,
    /// What is wrong and what to change.
    pub message: String,
}

/// The `transaction.timeout.ms` the spec asks for.
pub fn transaction_timeout_ms(spec: &ProducerSpec) -> Result<i64, ConfigViolation> {
    match &spec.transaction_timeout {
        None => Ok(DEFAULT_TRANSACTION_TIMEOUT_MS),
        Some(text) => TRANSACTION_TIMEOUT
            .parse_millis(text)
            // At most i32::MAX milliseconds (TRANSACTION_TIMEOUT's bound), so it always fits.
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
            .map_err(|message| ConfigViolation {
                key: TRANSACTION_TIMEOUT.path.into(),
                message,
            }),
    }
}

/// Keys the operator sets itself; an override of any of them is refused.
const MANAGED: [(&str, &str); 3] = [
    ("bootstrap.servers", "it comes from the KafkaCluster"),
    (
        "transactional.id",
        "it is <transactionalIdPrefix>-<instance>, stable per instance so a restarted instance fences its zombie",
    ),
    (
        "transaction.timeout.ms",
        "set spec.transactionTimeout instead (it is checked against the broker's transaction.max.timeout.ms)",
    ),
];

/// Why `key=value` cannot be written into a properties file as it is, if it cannot: the file
/// would read it as another property, or join it to the next line.
pub fn syntax_problem(key: &str, value: &str) -> Option<String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some(format!(
            "'{}' is not a client property name: names are letters, digits, '.', '_' and '-' \
             (anything else would be read as another line or value of the properties file)",
            key.escape_debug()
        ))
    } else if value.chars().any(|c| c.is_control() || c == '\\') {
        Some(format!(
            "the value of {key} holds a line break, control character or backslash, which the \
             properties file would read as another property or join to the next line. Remove it"
        ))
    } else {
        None
    }
}

/// Checks `clientOverrides` for keys that would weaken the guarantee. Every violation is listed.
pub fn check_overrides(spec: &ProducerSpec) -> Vec<ConfigViolation> {
    let mut violations = Vec::new();
    for (key, value) in &spec.client_overrides {
        let v = value.trim().to_ascii_lowercase();
        let problem = if let Some(problem) = syntax_problem(key, value) {
            Some(problem)
        } else if let Some((_, why)) = MANAGED.iter().find(|(k, _)| k == key) {
            Some(format!("{key} is set by the operator: {why}"))
        } else if spec.authentication.is_some() && super::access::PROPERTIES.contains(&key.as_str())
        {
            Some(format!(
                "{key} is set by the operator from spec.authentication (the producer logs in as its own user). Remove the override"
            ))
        } else {
            match key.as_str() {
                "enable.idempotence" if v != "true" => Some(format!(
                    "enable.idempotence={value} allows duplicates on retry; exactly-once needs true. Remove the override"
                )),
                "acks" | "request.required.acks" if v != "all" && v != "-1" => Some(format!(
                    "{key}={value} acknowledges writes before every in-sync replica has them; exactly-once needs all. Remove the override"
                )),
                "max.in.flight.requests.per.connection" | "max.in.flight" => {
                    match v.parse::<i64>() {
                        Ok(n) if (1..=MAX_IN_FLIGHT).contains(&n) => None,
                        _ => Some(format!(
                            "{key}={value} must be between 1 and {MAX_IN_FLIGHT}: more requests in flight can reorder or duplicate records under idempotence"
                        )),
                    }
                }
                "retries" | "message.send.max.retries" if v == "0" => Some(format!(
                    "{key}=0 turns a transient error into a lost write; idempotence needs retries. Remove the override"
                )),
                _ => None,
            }
        };
        if let Some(message) = problem {
            violations.push(ConfigViolation {
                key: key.clone(),
                message,
            });
        }
    }
    violations
}

/// The `transactional.id` of instance `ordinal`.
pub fn transactional_id(prefix: &str, ordinal: i32) -> String {
    format!("{prefix}-{ordinal}")
}

/// The Secret key holding instance `ordinal`'s properties.
pub fn instance_key(ordinal: i32) -> String {
    format!("instance-{ordinal}.properties")
}

/// Renders one properties file per instance (Secret key → file content), with `login` (the
/// credentials of `spec.authentication`, empty without it) in each. Fails with every violation
/// when an override weakens the guarantee or the timeout exceeds `broker_max_timeout_ms`.
pub fn render(
    spec: &ProducerSpec,
    instances: i32,
    bootstrap: &str,
    broker_max_timeout_ms: i64,
    login: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<ConfigViolation>> {
    let mut violations = check_overrides(spec);
    let timeout = match transaction_timeout_ms(spec) {
        Ok(ms) if ms > broker_max_timeout_ms => {
            violations.push(ConfigViolation {
                key: "spec.transactionTimeout".into(),
                message: format!(
                    "transactionTimeout is {ms} ms but the brokers' transaction.max.timeout.ms is {broker_max_timeout_ms}: \
                     the producer would fail at InitTransactions. Lower spec.transactionTimeout"
                ),
            });
            None
        }
        Ok(ms) => Some(ms),
        Err(v) => {
            violations.push(v);
            None
        }
    };
    if !violations.is_empty() {
        return Err(violations);
    }
    let mut files = BTreeMap::new();
    for ordinal in 0..instances.max(1) {
        let mut props: BTreeMap<String, String> = BTreeMap::from([
            ("bootstrap.servers".into(), bootstrap.to_string()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            (
                "max.in.flight.requests.per.connection".into(),
                MAX_IN_FLIGHT.to_string(),
            ),
        ]);
        if spec.guarantee == Guarantee::ExactlyOnce {
            props.insert(
                "transactional.id".into(),
                transactional_id(&spec.transactional_id_prefix, ordinal),
            );
            if let Some(ms) = timeout {
                props.insert("transaction.timeout.ms".into(), ms.to_string());
            }
        }
        props.extend(login.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (key, value) in &spec.client_overrides {
            props.insert(key.clone(), value.clone());
        }
        let mut text = String::from(
            "# Rendered by the exactly operator from the Producer resource. Do not edit.\n",
        );
        for (key, value) in props {
            text.push_str(&format!("{key}={value}\n"));
        }
        files.insert(instance_key(ordinal), text);
    }
    Ok(files)
}

/// Parses a rendered properties file back into pairs (comments and blank lines skipped).
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterRef;

    fn spec() -> ProducerSpec {
        ProducerSpec {
            cluster_ref: ClusterRef::kafka("main"),
            topics: vec![],
            transactional_id_prefix: "orders-writer".into(),
            instances: Some(2),
            stateful_set_ref: None,
            guarantee: Guarantee::ExactlyOnce,
            transaction_timeout: Some("30s".into()),
            client_overrides: BTreeMap::from([("linger.ms".into(), "5".into())]),
            authentication: None,
            consumer_group_ref: None,
        }
    }

    #[test]
    fn each_instance_gets_a_stable_transactional_id_and_the_safe_settings() {
        let files = render(&spec(), 2, "k:9092", 900_000, &BTreeMap::new()).unwrap_or_default();
        assert_eq!(files.len(), 2);
        let one = parse_properties(&files["instance-1.properties"]);
        assert_eq!(
            one,
            BTreeMap::from([
                ("bootstrap.servers".into(), "k:9092".into()),
                ("enable.idempotence".into(), "true".into()),
                ("acks".into(), "all".into()),
                ("max.in.flight.requests.per.connection".into(), "5".into()),
                ("transactional.id".into(), "orders-writer-1".into()),
                ("transaction.timeout.ms".into(), "30000".into()),
                ("linger.ms".into(), "5".into()),
            ])
        );
    }

    #[test]
    fn at_least_once_has_idempotence_but_no_transactional_id() {
        let mut s = spec();
        s.guarantee = Guarantee::AtLeastOnce;
        let files = render(&s, 2, "k:9092", 900_000, &BTreeMap::new()).unwrap_or_default();
        let props = parse_properties(&files["instance-0.properties"]);
        assert!(!props.contains_key("transactional.id"));
        assert_eq!(
            props.get("enable.idempotence").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn weakening_overrides_are_refused_naming_each_key() {
        let mut s = spec();
        s.client_overrides = BTreeMap::from([
            ("acks".into(), "1".into()),
            ("enable.idempotence".into(), "false".into()),
            ("max.in.flight.requests.per.connection".into(), "6".into()),
            ("transactional.id".into(), "x".into()),
            ("linger.ms".into(), "5".into()),
        ]);
        let violations = render(&s, 2, "k:9092", 900_000, &BTreeMap::new())
            .err()
            .unwrap_or_default();
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "acks",
                "enable.idempotence",
                "max.in.flight.requests.per.connection",
                "transactional.id"
            ]
        );
    }

    #[test]
    fn an_override_that_would_smuggle_a_line_into_the_properties_file_is_refused() {
        let mut s = spec();
        s.client_overrides = BTreeMap::from([
            ("linger.ms".into(), "5\nacks=1".into()),
            ("compression.type".into(), "zstd\\".into()),
            ("a=b".into(), "1".into()),
        ]);
        let violations = render(&s, 1, "k:9092", 900_000, &BTreeMap::new())
            .err()
            .unwrap_or_default();
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["a=b", "compression.type", "linger.ms"]);
    }

    #[test]
    fn overrides_that_keep_the_guarantee_are_accepted() {
        let mut s = spec();
        s.client_overrides = BTreeMap::from([
            ("acks".into(), "-1".into()),
            ("max.in.flight.requests.per.connection".into(), "1".into()),
            ("compression.type".into(), "zstd".into()),
        ]);
        assert!(render(&s, 2, "k:9092", 900_000, &BTreeMap::new()).is_ok());
    }

    #[test]
    fn timeout_above_the_broker_maximum_is_refused() {
        let mut s = spec();
        s.transaction_timeout = Some("20m".into());
        let violations = render(&s, 2, "k:9092", 900_000, &BTreeMap::new())
            .err()
            .unwrap_or_default();
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("900000"), "{:?}", violations);
    }

    #[test]
    fn transaction_timeout_takes_any_kubernetes_duration() {
        let mut s = spec();
        for (text, ms) in [("2h", 7_200_000), ("1h30m", 5_400_000), ("1.5s", 1_500)] {
            s.transaction_timeout = Some(text.into());
            assert_eq!(transaction_timeout_ms(&s), Ok(ms), "{text}");
        }
    }

    #[test]
    fn a_transaction_timeout_that_is_no_duration_is_refused_naming_the_field() {
        let mut s = spec();
        s.transaction_timeout = Some("1d".into());
        let violation = transaction_timeout_ms(&s).err();
        assert_eq!(
            violation.as_ref().map(|v| v.key.as_str()),
            Some("spec.transactionTimeout")
        );
        assert!(
            violation.is_some_and(|v| v.message.contains("'d' is not a unit")),
            "the message says what is wrong"
        );
    }
}
