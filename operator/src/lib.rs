//! exactly: a Kubernetes operator for exactly-once messaging pipelines on Apache Kafka.
//!
//! - [`api`]: the custom resource types (no client code);
//! - [`backend`]: what every messaging system provides (the seam), in neutral terms;
//! - [`kafka`], [`pulsar`]: the backends, the only places that talk to brokers;
//! - [`controller`]: one module per kind, reconciling the resources;
//! - [`crdgen`]: the generated CRD manifests.

pub mod api;
pub mod backend;
pub mod controller;
pub mod crdgen;
pub mod fence;
pub mod http;
pub mod kafka;
pub mod lease;
pub mod metrics;
pub mod pulsar;

mod error;
pub use error::{Error, Result};
