//! kstatus-compatible conditions. The wire shape is `metav1.Condition`'s, so `kubectl wait
//! --for=condition=Ready` and kstatus-aware tools (Argo CD, Flux) read them as they read any
//! built-in resource. `lastTransitionTime` moves only when `status` flips: a change of reason or
//! message alone is not a transition (DESIGN §4, quiet status).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The standard condition types every resource carries.
pub mod types {
    /// The resource is reconciled and its Kafka-side object matches the spec.
    pub const READY: &str = "Ready";
    /// Work is under way (kstatus): the operator is converging towards the spec.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot make progress without a change from a person (kstatus).
    pub const STALLED: &str = "Stalled";
}

/// Whether a condition holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// One aspect of a resource's state, as in `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Kind of condition, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[schemars(with = "String")]
    pub last_transition_time: Time,
    /// Stable, machine-readable reason in CamelCase, e.g. `TopicCreated`, `ClusterNotFound`.
    pub reason: String,
    /// What happened and, when something is wrong, what to do about it.
    pub message: String,
}

impl Condition {
    /// A condition as the reconciler wants it now; the transition time is settled by [`upsert`].
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status,
            observed_generation: generation,
            last_transition_time: Time(Timestamp::now()),
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// True when both say the same thing, whatever their transition times.
    pub fn same_state(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.observed_generation == other.observed_generation
            && self.reason == other.reason
            && self.message == other.message
    }
}

/// Puts `desired` into `conditions`, keeping the existing `lastTransitionTime` unless the status
/// flipped. Returns whether anything a reader would see changed.
pub fn upsert(conditions: &mut Vec<Condition>, mut desired: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            if existing.same_state(&desired) {
                return false;
            }
            if existing.status == desired.status {
                desired.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = desired;
            true
        }
        None => {
            conditions.push(desired);
            true
        }
    }
}

/// Merges the desired conditions into the previous ones, so unchanged conditions keep their
/// transition times. Conditions not in `desired` are kept as they were. When `desired` holds a
/// type twice the last one counts, and the earlier one does not move the transition time (a
/// flip there and back within one merge is no transition).
pub fn merge(previous: &[Condition], desired: Vec<Condition>) -> Vec<Condition> {
    let mut merged = previous.to_vec();
    for (i, condition) in desired.iter().enumerate() {
        if desired[i + 1..]
            .iter()
            .any(|later| later.type_ == condition.type_)
        {
            continue;
        }
        upsert(&mut merged, condition.clone());
    }
    merged
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    fn ready(status: ConditionStatus, reason: &str, message: &str, since: i64) -> Condition {
        Condition {
            last_transition_time: at(since),
            ..Condition::new(types::READY, status, reason, message, Some(1))
        }
    }

    #[test]
    fn upsert_of_an_identical_condition_changes_nothing() {
        let mut conditions = vec![ready(ConditionStatus::True, "TopicCreated", "ok", 100)];
        let changed = upsert(
            &mut conditions,
            ready(ConditionStatus::True, "TopicCreated", "ok", 999),
        );
        assert!(!changed);
        assert_eq!(conditions[0].last_transition_time, at(100));
    }

    #[test]
    fn new_message_with_same_status_keeps_transition_time() {
        let mut conditions = vec![ready(ConditionStatus::False, "CreateFailed", "a", 100)];
        let changed = upsert(
            &mut conditions,
            ready(ConditionStatus::False, "CreateFailed", "b", 999),
        );
        assert!(changed);
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].last_transition_time, at(100));
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conditions = vec![ready(ConditionStatus::False, "CreateFailed", "a", 100)];
        let changed = upsert(
            &mut conditions,
            ready(ConditionStatus::True, "TopicCreated", "ok", 999),
        );
        assert!(changed);
        assert_eq!(conditions[0].last_transition_time, at(999));
    }

    #[test]
    fn merge_keeps_conditions_that_are_not_recomputed() {
        let previous = vec![
            ready(ConditionStatus::True, "TopicCreated", "ok", 100),
            Condition {
                last_transition_time: at(50),
                ..Condition::new("Drifted", ConditionStatus::False, "InSync", "", Some(1))
            },
        ];
        let merged = merge(
            &previous,
            vec![ready(ConditionStatus::True, "TopicCreated", "ok", 999)],
        );
        assert_eq!(merged, previous);
    }

    #[test]
    fn condition_serializes_with_metav1_field_names() {
        let json =
            serde_json::to_value(ready(ConditionStatus::True, "R", "m", 0)).unwrap_or_default();
        assert_eq!(json["type"], "Ready");
        assert_eq!(json["status"], "True");
        assert_eq!(json["observedGeneration"], 1);
        assert_eq!(json["lastTransitionTime"], "1970-01-01T00:00:00Z");
    }
}
