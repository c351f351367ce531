//! Apache Pulsar: the second backend (issue #12). The operator talks to Pulsar through its admin
//! REST API only ([`admin::PulsarAdmin`]); clients (producers, consumers, workers) speak the
//! binary protocol with the settings the operator renders for them.
//!
//! - [`admin`]: the REST client (tenants, namespaces, partitioned topics, topic policies, broker
//!   configuration, transaction coordinators), fenced like the Kafka client;
//! - [`error`]: what a call can fail with, and the condition reasons it maps to;
//! - [`stats`]: what the broker reports of a topic's partitions (publishers, subscriptions);
//! - [`topics`]: the Topic backend ([`crate::backend::TopicAdmin`]) on a Pulsar cluster:
//!   partitioned topics whose partitions only grow, with deduplication enforced as a topic
//!   policy.

pub mod admin;
pub mod error;
pub mod stats;
pub mod topics;

pub use admin::{PulsarAdmin, RuntimeConfig};
pub use error::PulsarError;
