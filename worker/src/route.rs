//! Choosing the Kafka topic of an output record.
//!
//! In order: the topic the transform chose (a Topic resource name that must be one of
//! `output.topics`), else the `route` rule matching the record's key or a field of its JSON value,
//! else `output.defaultTopic`; with none of these the record is a [`RecordError`].

use std::collections::BTreeMap;

use crate::config::{Output, Route, RouteBy};
use crate::transform::{OutputRecord, RecordError};

/// Resolves output records to Kafka topic names; built once from the configuration.
#[derive(Clone, Debug)]
pub struct Router {
    topics: BTreeMap<String, String>,
    default_topic: Option<String>,
    route: Option<CompiledRoute>,
}

#[derive(Clone, Debug)]
struct CompiledRoute {
    by: By,
    rules: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
enum By {
    Key,
    Field(Vec<String>),
}

impl Router {
    /// A router for the configuration's `output` section. Names the configuration does not
    /// define (validation reports them) resolve to record errors, never to a panic.
    pub fn new(output: &Output) -> Router {
        Router {
            topics: output.topics.clone(),
            default_topic: output.default_topic.clone(),
            route: output
                .route
                .as_ref()
                .map(|Route { by, rules }| CompiledRoute {
                    by: match by {
                        RouteBy::Key => By::Key,
                        RouteBy::Field { path } => {
                            By::Field(path.split('.').map(String::from).collect())
                        }
                    },
                    rules: rules.clone(),
                }),
        }
    }

    /// The Kafka topic `record` goes to.
    pub fn resolve(&self, record: &OutputRecord) -> Result<&str, RecordError> {
        if let Some(name) = &record.topic {
            return self.kafka_topic(name).ok_or_else(|| {
                RecordError::new(format!(
                    "the transform chose the topic {name}, which is not one of the Pipeline's \
                     output topics ({})",
                    self.names()
                ))
            });
        }
        let mut unmatched = None;
        if let Some(route) = &self.route {
            let value = route.by.value_of(record);
            if let Some(name) = value.as_ref().and_then(|v| route.rules.get(v)) {
                return self.kafka_topic(name).ok_or_else(|| {
                    RecordError::new(format!(
                        "the route rule for {value:?} names the topic {name}, which is not one of \
                         the Pipeline's output topics ({})",
                        self.names()
                    ))
                });
            }
            unmatched = Some(match value {
                Some(value) => format!("no route rule matches {} {value:?}", route.by),
                None => format!("the record has no {} to route by", route.by),
            });
        }
        if let Some(name) = &self.default_topic {
            return self.kafka_topic(name).ok_or_else(|| {
                RecordError::new(format!(
                    "the default topic {name} is not one of the Pipeline's output topics ({})",
                    self.names()
                ))
            });
        }
        Err(RecordError::new(match unmatched {
            Some(why) => format!("{why} and the Pipeline has no default topic"),
            None => "the record has no topic: no route and no default topic".to_string(),
        }))
    }

    fn kafka_topic(&self, name: &str) -> Option<&str> {
        self.topics.get(name).map(String::as_str)
    }

    fn names(&self) -> String {
        self.topics
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl By {
    /// The text rules match against, or `None` when the record has none.
    fn value_of(&self, record: &OutputRecord) -> Option<String> {
        match self {
            By::Key => record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            By::Field(path) => {
                let value: serde_json::Value =
                    serde_json::from_slice(record.value.as_deref()?).ok()?;
                let field = path.iter().try_fold(&value, |v, name| v.get(name))?;
                match field {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }
            }
        }
    }
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            By::Key => f.write_str("key"),
            By::Field(path) => write!(f, "field {}", path.join(".")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(route: Option<Route>, default_topic: Option<&str>) -> Output {
        Output {
            topics: [
                ("eu".to_string(), "orders.eu".to_string()),
                ("us".to_string(), "orders.us".to_string()),
                ("other".to_string(), "orders.other".to_string()),
            ]
            .into(),
            default_topic: default_topic.map(String::from),
            route,
        }
    }

    fn by_field(path: &str) -> Option<Route> {
        Some(Route {
            by: RouteBy::Field { path: path.into() },
            rules: [
                ("EU".to_string(), "eu".to_string()),
                ("US".to_string(), "us".to_string()),
                ("42".to_string(), "us".to_string()),
            ]
            .into(),
        })
    }

    fn value(json: &str) -> OutputRecord {
        OutputRecord {
            value: Some(json.as_bytes().to_vec()),
            ..OutputRecord::default()
        }
    }

    fn resolve(router: &Router, record: &OutputRecord) -> Result<String, String> {
        router
            .resolve(record)
            .map(String::from)
            .map_err(|e| e.message)
    }

    #[test]
    fn transform_choice_wins_over_route_and_default() {
        let router = Router::new(&output(by_field("region"), Some("other")));
        let mut record = value(r#"{"region": "EU"}"#);
        record.topic = Some("us".into());
        assert_eq!(resolve(&router, &record), Ok("orders.us".into()));
    }

    #[test]
    fn transform_choice_must_be_an_output_topic() {
        let router = Router::new(&output(None, Some("other")));
        let mut record = value("{}");
        record.topic = Some("apac".into());
        assert_eq!(
            resolve(&router, &record),
            Err(
                "the transform chose the topic apac, which is not one of the Pipeline's output \
                 topics (eu, other, us)"
                    .into()
            )
        );
    }

    #[test]
    fn route_by_nested_field() {
        let router = Router::new(&output(by_field("customer.region"), Some("other")));
        let record = value(r#"{"customer": {"region": "EU"}}"#);
        assert_eq!(resolve(&router, &record), Ok("orders.eu".into()));
    }

    #[test]
    fn route_by_number_field_matches_its_json_text() {
        let router = Router::new(&output(by_field("region"), None));
        assert_eq!(
            resolve(&router, &value(r#"{"region": 42}"#)),
            Ok("orders.us".into())
        );
    }

    #[test]
    fn route_by_key() {
        let route = Some(Route {
            by: RouteBy::Key,
            rules: [("tenant-a".to_string(), "eu".to_string())].into(),
        });
        let router = Router::new(&output(route, Some("other")));
        let mut record = value("{}");
        record.key = Some(b"tenant-a".to_vec());
        assert_eq!(resolve(&router, &record), Ok("orders.eu".into()));
        record.key = Some(b"tenant-b".to_vec());
        assert_eq!(resolve(&router, &record), Ok("orders.other".into()));
    }

    #[test]
    fn no_match_goes_to_the_default_topic() {
        let router = Router::new(&output(by_field("region"), Some("other")));
        for record in [
            value(r#"{"region": "APAC"}"#),
            value(r#"{"country": "FR"}"#),
            value(r#"{"region": {"name": "EU"}}"#),
            value("not json"),
            OutputRecord::default(),
        ] {
            assert_eq!(resolve(&router, &record), Ok("orders.other".into()));
        }
    }

    #[test]
    fn no_match_and_no_default_is_a_record_error() {
        let router = Router::new(&output(by_field("region"), None));
        assert_eq!(
            resolve(&router, &value(r#"{"region": "APAC"}"#)),
            Err(
                "no route rule matches field region \"APAC\" and the Pipeline has no default topic"
                    .into()
            )
        );
        assert_eq!(
            resolve(&router, &value("{}")),
            Err(
                "the record has no field region to route by and the Pipeline has no default topic"
                    .into()
            )
        );
    }

    #[test]
    fn without_route_the_default_topic_is_used() {
        let router = Router::new(&output(None, Some("eu")));
        assert_eq!(resolve(&router, &value("1")), Ok("orders.eu".into()));
        let router = Router::new(&output(None, None));
        assert!(resolve(&router, &value("1")).is_err());
    }
}
