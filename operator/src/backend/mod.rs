//! The backend seam: what a messaging system must provide for the operator to run exactly-once
//! resources on it, in terms that belong to no one system.
//!
//! Where each backend lives:
//! - [`crate::kafka`]: Apache Kafka — the wire client (`kafka::wire`), `KafkaAdmin`, security;
//!   the Kafka cluster's batched observation is `controller::observe`;
//! - [`crate::pulsar`]: Apache Pulsar — the admin REST client and its Topic backend.
//!
//! What every backend provides:
//! 1. its [`Capabilities`]: what it can and cannot guarantee, so status can say so plainly
//!    instead of pretending one system behaves like another;
//! 2. a [`TopicAdmin`]: describe, create, grow and configure one topic — the calls the Topic
//!    controller's shared planners (`controller::topic::plan_topic_change`, `plan_config`)
//!    drive, whichever the system;
//! 3. its own error type, carried through the controllers as [`Error`], whose
//!    [`Error::reason`] names the system (`KafkaUnreachable`, `PulsarRefused`, …).
//!
//! Producers, consumer groups and Pipelines are Kafka-only so far: their controllers call
//! `KafkaAdmin` directly, and they move behind this seam as a second system gains them.

use std::collections::BTreeMap;
use std::future::Future;

use crate::kafka::KafkaError;
use crate::pulsar::PulsarError;

pub use crate::kafka::{CreateOutcome, NewTopicRequest, TopicDescription};

/// The messaging systems the operator runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum System {
    Kafka,
    Pulsar,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Kafka => "Kafka",
            System::Pulsar => "Pulsar",
        })
    }
}

/// What a messaging system can and cannot guarantee, as the operator uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes to several partitions and topics commit or abort together.
    pub transactions: bool,
    /// Consuming (offsets, acknowledgements) joins the transaction: read-process-write is
    /// atomic.
    pub transactional_consume: bool,
    /// A write sent again after a producer restart is dropped by the broker (Kafka: a
    /// transactional id's fenced epochs; Pulsar: deduplication by producer name and sequence id).
    pub deduplicated_writes: bool,
    /// Replication is chosen per topic (Kafka); otherwise per namespace or cluster (Pulsar).
    pub replication_per_topic: bool,
    /// A topic's partitions can be removed (no system here can: they only grow).
    pub partitions_shrink: bool,
}

impl System {
    /// What this system guarantees.
    pub fn capabilities(self) -> Capabilities {
        match self {
            System::Kafka => Capabilities {
                transactions: true,
                transactional_consume: true,
                deduplicated_writes: true,
                replication_per_topic: true,
                partitions_shrink: false,
            },
            System::Pulsar => Capabilities {
                transactions: true,
                transactional_consume: true,
                deduplicated_writes: true,
                replication_per_topic: false,
                partitions_shrink: false,
            },
        }
    }
}

/// A failed call to a messaging system, whichever it is.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Pulsar(#[from] PulsarError),
}

impl Error {
    /// Stable CamelCase label for conditions, events and metrics, naming the system.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kafka(e) => e.reason(),
            Error::Pulsar(e) => e.reason(),
        }
    }

    /// Whether the system refused the request as asked (it stays refused until the spec or the
    /// cluster changes), as opposed to a failure worth retrying.
    pub fn is_refused(&self) -> bool {
        match self {
            Error::Kafka(e) => matches!(e, KafkaError::Refused { .. }),
            Error::Pulsar(e) => e.is_refused(),
        }
    }

    /// A transient condition that is not a call's failure (e.g. a change not yet visible).
    pub fn not_yet(system: System, message: String) -> Error {
        match system {
            System::Kafka => Error::Kafka(KafkaError::Interrupted(message)),
            System::Pulsar => Error::Pulsar(PulsarError::Interrupted(message)),
        }
    }
}

/// The configuration set on a topic itself, key by key (never the system's defaults). On Kafka
/// these are topic configs (`retention.ms`, …); on Pulsar the topic policies the operator
/// manages (`deduplicationEnabled`, `retentionTimeInMinutes`, `retentionSizeInMB`).
pub type TopicConfig = BTreeMap<String, String>;

/// The calls the Topic controller makes on one cluster, whichever its system. Names are the
/// system's own (`orders`, `persistent://acme/sales/orders`).
pub trait TopicAdmin: Send + Sync {
    /// The system behind this admin.
    fn system(&self) -> System;

    /// The topic, or `None` when it does not exist.
    fn describe(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<TopicDescription>, Error>> + Send;

    /// Creates the topic; one that exists already is reported, not changed.
    fn create(
        &self,
        request: &NewTopicRequest,
    ) -> impl Future<Output = Result<CreateOutcome, Error>> + Send;

    /// Raises the topic's partitions to `to`.
    fn grow_partitions(
        &self,
        name: &str,
        to: i32,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The configuration set on the topic itself.
    fn configs(&self, name: &str) -> impl Future<Output = Result<TopicConfig, Error>> + Send;

    /// Sets the keys of `set` and removes those of `delete` on the topic.
    fn alter_configs(
        &self,
        name: &str,
        set: &TopicConfig,
        delete: &[String],
    ) -> impl Future<Output = Result<(), Error>> + Send;
}
