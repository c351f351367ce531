//! The exactly-once Pipeline worker.
//!
//! One worker process runs one member of a Pipeline: it consumes the input topics in a consumer
//! group, transforms each record, produces the results into the output topics, and commits the
//! input offsets inside the same Kafka transaction as the outputs (KIP-447
//! consume-transform-produce). A record is therefore reflected in the outputs exactly once, across
//! crashes, restarts and rebalances.
//!
//! The library has two halves:
//! - the pure core, always compiled, which the operator shares with `default-features = false`:
//!   [`config`] (the `pipeline.json` the operator renders), [`transform`] (jq compilation and
//!   application), [`route`] (choosing an output topic), [`progress`] (the figures committed with
//!   the offsets), [`ledger`] (the open transaction's bookkeeping) and [`decide`] (the loop's
//!   decisions);
//! - the Kafka shell, behind the `kafka` feature: `run` (the transaction loop), `metrics` and
//!   `http`.

pub mod config;
pub mod decide;
pub mod ledger;
pub mod progress;
pub mod route;
pub mod transform;

#[cfg(feature = "kafka")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod metrics;
#[cfg(feature = "kafka")]
pub mod run;

pub use config::{ConfigProblem, WorkerConfig};
pub use progress::Progress;
pub use transform::{CompileError, InputRecord, OutputRecord, RecordError, Transform};
