//! Kafka admin requests librdkafka lacks, spoken directly with the `kafka-protocol` crate.
//!
//! [`WireClient`] keeps one TCP connection per broker, negotiates API versions with `ApiVersions`
//! when it opens one, and routes each request to where Kafka wants it: any broker for cluster
//! metadata and configs, the partition leader for offsets, producer state and transaction markers,
//! and the group or transaction coordinator (found with `FindCoordinator`) for groups and
//! transactions. Requests on one connection are sent one at a time; every request is bounded by the
//! client's request timeout, and a connection that fails is dropped and opened again on the next
//! call.
//!
//! Error codes in responses become [`WireError::Broker`] with Kafka's name for the code; routing
//! errors (leader or coordinator moved or not yet available) are retried with a short backoff
//! until the request timeout has passed.
//!
//! The files of this module, one concern each (every public item is re-exported here):
//! - `mod.rs`: the [`WireClient`] itself, its constructors and its request counter.
//! - `error.rs`: [`WireError`], the error codes used by name, and Kafka's name of every code
//!   ([`error_name`]).
//! - `types.rs`: the plain data types the calls take and return ([`TopicPartition`],
//!   [`ClusterMetadata`], [`OffsetSpec`], [`GroupDescription`], [`TransactionDescription`], ...).
//! - `request.rs`: [`WireRequest`] (which response each request type gets), the generic
//!   [`WireClient::send`], and helpers that build request fields.
//! - `conn.rs`: connections and framing: connecting (TCP, TLS, `ApiVersions`), encoding a frame,
//!   one round trip, picking the version both sides speak.
//! - `sasl.rs`: SASL authentication of a new connection (PLAIN, SCRAM).
//! - `route.rs`: where requests go (any broker, a node, partition leaders, group and transaction
//!   coordinators) and the retries while leaders and coordinators move.
//! - `admin/`: the admin calls, one file per subject: `cluster.rs` (metadata, features, configs),
//!   `offsets.rs`, `groups.rs`, `transactions.rs`, `scram.rs` (SCRAM users), `acls.rs`.
//! - `produce.rs`: a bare producer that leaves a hanging transaction, for tests only (cargo
//!   feature `test-support`).

mod admin;
mod conn;
mod error;
#[cfg(feature = "test-support")]
mod produce;
mod request;
mod route;
mod sasl;
mod types;

pub use error::{WireError, error_name};
pub use request::WireRequest;
pub use types::{
    BrokerMetadata, ClusterMetadata, CommittedOfGroups, ConfigEntry, ConfigSource,
    GroupDescription, GroupListing, GroupMember, Isolation, OffsetSpec, PartitionMetadata,
    ProducerState, TopicMetadata, TopicPartition, TransactionDescription, TransactionListing,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard};
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;

use super::security::Security;
use conn::Slot;

/// Admin client speaking the Kafka protocol directly. Cheap to create (no I/O until the first
/// call); share one per cluster.
pub struct WireClient {
    bootstrap: Vec<String>,
    client_id: StrBytes,
    request_timeout: Duration,
    correlation_id: AtomicI32,
    /// Node id to `host:port`, from metadata and `FindCoordinator` answers.
    nodes: StdMutex<BTreeMap<i32, String>>,
    /// Connection per `host:port`.
    connections: StdMutex<HashMap<String, Slot>>,
    /// TLS and SASL settings.
    security: Security,
    /// The TLS client configuration, when the protocol uses TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Told the API name (`CreateTopics`, `Metadata`, ...) of every request sent.
    on_request: Option<RequestCounter>,
}

/// Counts requests by Kafka API name, e.g. into a Prometheus counter family.
pub type RequestCounter = Arc<dyn Fn(&str) + Send + Sync>;

fn lock<T>(mutex: &StdMutex<T>) -> StdMutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WireClient {
    /// A client for the brokers at `bootstrap` (`host:port[,host:port...]`), naming itself
    /// `client_id`; `request_timeout` bounds every request, connecting included. No I/O happens
    /// until the first call.
    pub fn new(bootstrap: &str, client_id: &str, request_timeout: Duration) -> Self {
        WireClient::plain(bootstrap, client_id, request_timeout)
    }

    /// Like [`WireClient::new`], connecting with TLS and/or SASL as `security` says. Fails when
    /// the TLS settings cannot be used (no certificate in the CA PEM, ...).
    pub fn with_security(
        bootstrap: &str,
        client_id: &str,
        request_timeout: Duration,
        security: Security,
    ) -> Result<Self, WireError> {
        let tls = if security.protocol.tls() {
            Some(security.tls_config().map_err(WireError::Protocol)?)
        } else {
            None
        };
        Ok(WireClient {
            security,
            tls,
            ..WireClient::plain(bootstrap, client_id, request_timeout)
        })
    }

    fn plain(bootstrap: &str, client_id: &str, request_timeout: Duration) -> Self {
        WireClient {
            security: Security::default(),
            tls: None,
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            client_id: StrBytes::from_string(client_id.to_string()),
            request_timeout,
            correlation_id: AtomicI32::new(1),
            nodes: StdMutex::new(BTreeMap::new()),
            connections: StdMutex::new(HashMap::new()),
            on_request: None,
        }
    }

    /// The same client, telling `counter` the API name of each request it sends.
    pub fn counting(self, counter: RequestCounter) -> Self {
        WireClient {
            on_request: Some(counter),
            ..self
        }
    }

    /// Requests sent so far (handshakes included): what a batched observation costs.
    pub fn requests_sent(&self) -> u64 {
        u64::try_from(self.correlation_id.load(Ordering::Relaxed) - 1).unwrap_or(0)
    }

    fn next_correlation_id(&self) -> i32 {
        self.correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }
}
