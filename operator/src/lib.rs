//! exactly: a Kubernetes operator for exactly-once messaging pipelines on Apache Kafka.
//!
//! - [`api`]: the custom resource types (no client code);
//! - [`kafka`]: the one place that talks to brokers;
//! - [`controller`]: one module per kind, reconciling the resources;
//! - [`crdgen`]: the generated CRD manifests.

pub mod api;
pub mod controller;
pub mod crdgen;
pub mod fence;
pub mod http;
pub mod kafka;
pub mod lease;
pub mod metrics;

mod error;
pub use error::{Error, Result};
