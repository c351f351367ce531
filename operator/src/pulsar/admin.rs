//! Pulsar's admin REST API (`/admin/v2`, `/admin/v3`), the calls the operator makes.
//!
//! Every call is bounded by [`REQUEST_TIMEOUT`]; a change (PUT, POST, DELETE) is checked against
//! the leader fence first, as the Kafka client does. Pulsar answers a refusal with a status and a
//! JSON body `{"reason": "..."}`, whose first line becomes the error's reason (server errors
//! carry a whole Java stack trace there).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::error::PulsarError;
use super::stats::{DEDUP_CURSOR, PartitionedInternalStats, PartitionedStats, TopicStats};
use crate::fence::Fence;

/// How long one admin call may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest reason kept from an answer.
const REASON_MAX: usize = 300;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Admin access to one Pulsar cluster, through one of its brokers' web service.
#[derive(Clone)]
pub struct PulsarAdmin {
    /// `http(s)://host:port`, without a trailing slash.
    base: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    token: Option<String>,
    client: Client<Https, Full<Bytes>>,
    fence: Fence,
}

impl std::fmt::Debug for PulsarAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("PulsarAdmin")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The broker's runtime configuration (`/admin/v2/brokers/configuration/runtime`): every key
/// with its effective value, as text.
pub type RuntimeConfig = BTreeMap<String, String>;

/// A topic's retention policy (`retention` of a topic or namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Minutes acknowledged messages are kept; -1 forever.
    pub retention_time_in_minutes: i64,
    /// Megabytes of acknowledged messages kept; -1 without limit.
    #[serde(rename = "retentionSizeInMB")]
    pub retention_size_in_mb: i64,
}

/// The load of one transaction coordinator (`/admin/v3/transactions/coordinatorStats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorStats {
    /// `Ready` once the coordinator serves transactions.
    #[serde(default)]
    pub state: String,
    /// Transactions open on it.
    #[serde(default)]
    pub ongoing_txn_size: i64,
}

/// A transaction open on a coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTransaction {
    /// `(<mostSigBits>,<leastSigBits>)`, as Pulsar names it.
    pub id: String,
    /// The coordinator's state for it, e.g. `OPEN`, `COMMITTING`, `ABORTING`.
    pub status: String,
    /// When it was opened (epoch milliseconds).
    pub opened_ms: Option<i64>,
    /// Its timeout in milliseconds, counted from when it was opened: the coordinator aborts it
    /// then. (Pulsar names it `timeoutAt`, but it is the duration, e.g. `15000`.)
    pub timeout_ms: Option<i64>,
}

#[derive(Deserialize)]
struct PartitionedMetadata {
    partitions: i32,
}

#[derive(Deserialize)]
struct Reason {
    reason: String,
}

/// The first line of Pulsar's reason for a refusal, shortened.
fn reason_of(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Reason>(body) {
        Ok(r) => r.reason,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("---"))
        .unwrap_or_default();
    let line = line.strip_prefix("Message: ").unwrap_or(line);
    match line.char_indices().nth(REASON_MAX) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// Percent-encodes one path segment (Pulsar names are mostly `[A-Za-z0-9._-]`, but `=` and `:`
/// are allowed in topic names).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A persistent topic's name: tenant, namespace and local name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub tenant: String,
    pub namespace: String,
    pub topic: String,
}

impl TopicName {
    /// `tenant/namespace/topic`, the form the operator keys topics by; `None` unless it has
    /// exactly three non-empty parts.
    pub fn parse(name: &str) -> Option<TopicName> {
        let name = name.strip_prefix("persistent://").unwrap_or(name);
        let mut parts = name.split('/');
        let (tenant, namespace, topic) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [tenant, namespace, topic].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(TopicName {
            tenant: tenant.into(),
            namespace: namespace.into(),
            topic: topic.into(),
        })
    }

    /// The admin API's path of the topic under `/admin/v2`.
    fn path(&self) -> String {
        format!(
            "/admin/v2/persistent/{}/{}/{}",
            segment(&self.tenant),
            segment(&self.namespace),
            segment(&self.topic)
        )
    }

    /// `tenant/namespace`.
    pub fn namespace_name(&self) -> String {
        format!("{}/{}", self.tenant, self.namespace)
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "persistent://{}/{}/{}",
            self.tenant, self.namespace, self.topic
        )
    }
}

/// An answer: its status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl PulsarAdmin {
    /// A client for the admin API at `url` (`http://…` or `https://…`); `tls` verifies an
    /// https server (the cluster's CA), `token` authenticates. Nothing is sent until a call.
    pub fn new(
        url: &str,
        token: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<PulsarAdmin, PulsarError> {
        let base = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base
            .parse()
            .map_err(|e| PulsarError::ClientConfig(format!("adminUrl '{url}': {e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(PulsarError::ClientConfig(format!(
                    "adminUrl '{url}' must start with http:// or https://"
                )));
            }
        }
        if uri.scheme_str() == Some("https") && tls.is_none() {
            return Err(PulsarError::ClientConfig(format!(
                "adminUrl '{url}' is https but no TLS settings were given"
            )));
        }
        let tls = match tls {
            Some(tls) => tls,
            // Plain http: the connector still wants a configuration, never used.
            None => Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| PulsarError::ClientConfig(format!("TLS: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            .build(https);
        Ok(PulsarAdmin {
            base,
            token,
            client,
            fence: Fence::open(),
        })
    }

    /// This client, sending no change while `fence` does not hold.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The admin URL this client talks to.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, PulsarError> {
        if method != Method::GET {
            self.fence.check()?;
            crate::fence::passed("Pulsar", format_args!("{method} {path} on {}", self.base));
        }
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| PulsarError::ClientConfig(format!("request {path}: {e}")))?;
        let unreachable = |message: String| PulsarError::Unreachable {
            url: self.base.clone(),
            message,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    /// Sends a request and fails unless the answer is a success.
    async fn send_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        operation: &'static str,
        resource: &str,
    ) -> Result<Bytes, PulsarError> {
        let answer = self.send(method, path, body).await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(refused(operation, resource, &answer))
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        operation: &'static str,
        resource: &str,
    ) -> Result<T, PulsarError> {
        let body = self
            .send_ok(Method::GET, path, None, operation, resource)
            .await?;
        serde_json::from_slice(&body).map_err(|e| {
            PulsarError::Protocol(format!(
                "{operation} '{resource}': {e} in {}",
                preview(&body)
            ))
        })
    }

    /// The broker's version, e.g. `4.0.7`.
    pub async fn version(&self) -> Result<String, PulsarError> {
        let body = self
            .send_ok(
                Method::GET,
                "/admin/v2/brokers/version",
                None,
                "read the version",
                "brokers",
            )
            .await?;
        let text = String::from_utf8_lossy(&body);
        Ok(text.trim().trim_matches('"').to_string())
    }

    /// The names of the clusters the configuration store knows.
    pub async fn clusters(&self) -> Result<Vec<String>, PulsarError> {
        self.get_json("/admin/v2/clusters", "list the clusters", "clusters")
            .await
    }

    /// The broker's effective configuration.
    pub async fn runtime_config(&self) -> Result<RuntimeConfig, PulsarError> {
        let raw: BTreeMap<String, serde_json::Value> = self
            .get_json(
                "/admin/v2/brokers/configuration/runtime",
                "read the broker configuration",
                "brokers",
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect())
    }

    /// Whether the tenant exists.
    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, PulsarError> {
        let path = format!("/admin/v2/tenants/{}", segment(tenant));
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(refused("read the tenant", tenant, &answer)),
        }
    }

    /// Creates the tenant, allowed on `clusters`; `false` when it existed already.
    pub async fn create_tenant(
        &self,
        tenant: &str,
        clusters: &[String],
    ) -> Result<bool, PulsarError> {
        let path = format!("/admin/v2/tenants/{}", segment(tenant));
        let body = serde_json::json!({"adminRoles": [], "allowedClusters": clusters}).to_string();
        let answer = self.send(Method::PUT, &path, Some(body)).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(refused("create the tenant", tenant, &answer)),
        }
    }

    /// The namespaces of `tenant`, as `tenant/namespace`.
    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>, PulsarError> {
        self.get_json(
            &format!("/admin/v2/namespaces/{}", segment(tenant)),
            "list the namespaces of",
            tenant,
        )
        .await
    }

    /// Creates the namespace `tenant/namespace`; `false` when it existed already.
    pub async fn create_namespace(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<bool, PulsarError> {
        let path = format!(
            "/admin/v2/namespaces/{}/{}",
            segment(tenant),
            segment(namespace)
        );
        let answer = self.send(Method::PUT, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(refused(
                "create the namespace",
                &format!("{tenant}/{namespace}"),
                &answer,
            )),
        }
    }

    /// The partitions of the topic: `None` when no topic has the name, `Some(0)` for a topic
    /// that is not partitioned.
    pub async fn partitions(&self, topic: &TopicName) -> Result<Option<i32>, PulsarError> {
        let path = format!("{}/partitions", topic.path());
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => serde_json::from_slice::<PartitionedMetadata>(&answer.body)
                .map(|m| Some(m.partitions))
                .map_err(|e| PulsarError::Protocol(format!("partitions of '{topic}': {e}"))),
            // A namespace or tenant that does not exist holds no topic either.
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused(
                "read the partitions of",
                &topic.to_string(),
                &answer,
            )),
        }
    }

    /// Creates the topic with `partitions` partitions; `false` when it existed already.
    pub async fn create_partitioned(
        &self,
        topic: &TopicName,
        partitions: i32,
    ) -> Result<bool, PulsarError> {
        let path = format!("{}/partitions", topic.path());
        let answer = self
            .send(Method::PUT, &path, Some(partitions.to_string()))
            .await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(refused(
                "create the partitioned topic",
                &topic.to_string(),
                &answer,
            )),
        }
    }

    /// Raises the topic's partitions to `partitions` (Pulsar refuses fewer).
    pub async fn grow_partitions(
        &self,
        topic: &TopicName,
        partitions: i32,
    ) -> Result<(), PulsarError> {
        let path = format!("{}/partitions", topic.path());
        self.send_ok(
            Method::POST,
            &path,
            Some(partitions.to_string()),
            "add partitions to",
            &topic.to_string(),
        )
        .await
        .map(drop)
    }

    /// Deletes the partitioned topic; refused (412) while producers or consumers are connected.
    /// A topic that does not exist is not an error.
    pub async fn delete_partitioned(&self, topic: &TopicName) -> Result<(), PulsarError> {
        let path = format!("{}/partitions", topic.path());
        let answer = self.send(Method::DELETE, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(refused(
                "delete the partitioned topic",
                &topic.to_string(),
                &answer,
            )),
        }
    }

    /// The topic-level deduplication policy: `None` when the topic does not set one (the
    /// namespace's or broker's applies).
    pub async fn deduplication(&self, topic: &TopicName) -> Result<Option<bool>, PulsarError> {
        let body = self
            .send_ok(
                Method::GET,
                &format!("{}/deduplicationEnabled", topic.path()),
                None,
                "read the deduplication policy of",
                &topic.to_string(),
            )
            .await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<Option<bool>>(&body).map_err(|e| {
            PulsarError::Protocol(format!(
                "deduplication policy of '{topic}': {e} in {}",
                preview(&body)
            ))
        })
    }

    /// Sets (`Some`) or removes (`None`) the topic-level deduplication policy.
    pub async fn set_deduplication(
        &self,
        topic: &TopicName,
        enabled: Option<bool>,
    ) -> Result<(), PulsarError> {
        let path = format!("{}/deduplicationEnabled", topic.path());
        let (method, body) = match enabled {
            Some(on) => (Method::POST, Some(on.to_string())),
            None => (Method::DELETE, None),
        };
        self.send_ok(
            method,
            &path,
            body,
            "set the deduplication policy of",
            &topic.to_string(),
        )
        .await
        .map(drop)
    }

    /// The topic-level retention policy: `None` when the topic does not set one.
    pub async fn retention(&self, topic: &TopicName) -> Result<Option<Retention>, PulsarError> {
        let body = self
            .send_ok(
                Method::GET,
                &format!("{}/retention", topic.path()),
                None,
                "read the retention policy of",
                &topic.to_string(),
            )
            .await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<Option<Retention>>(&body).map_err(|e| {
            PulsarError::Protocol(format!(
                "retention policy of '{topic}': {e} in {}",
                preview(&body)
            ))
        })
    }

    /// Sets (`Some`) or removes (`None`) the topic-level retention policy.
    pub async fn set_retention(
        &self,
        topic: &TopicName,
        retention: Option<Retention>,
    ) -> Result<(), PulsarError> {
        let path = format!("{}/retention", topic.path());
        let (method, body) = match retention {
            Some(r) => (
                Method::POST,
                Some(serde_json::to_string(&r).map_err(|e| PulsarError::Protocol(e.to_string()))?),
            ),
            None => (Method::DELETE, None),
        };
        self.send_ok(
            method,
            &path,
            body,
            "set the retention policy of",
            &topic.to_string(),
        )
        .await
        .map(drop)
    }

    /// The stats of each partition of the partitioned topic (full partition name → stats);
    /// `None` when the topic does not exist.
    pub async fn partition_stats(
        &self,
        topic: &TopicName,
    ) -> Result<Option<BTreeMap<String, TopicStats>>, PulsarError> {
        let path = format!("{}/partitioned-stats?perPartition=true", topic.path());
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => serde_json::from_slice::<PartitionedStats>(&answer.body)
                .map(|stats| Some(stats.partitions))
                .map_err(|e| {
                    PulsarError::Protocol(format!(
                        "stats of '{topic}': {e} in {}",
                        preview(&answer.body)
                    ))
                }),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused("read the stats of", &topic.to_string(), &answer)),
        }
    }

    /// The brokers' last deduplication snapshot on each partition of the partitioned topic
    /// (partition → producer name → highest sequence id persisted); `None` when the topic does
    /// not exist.
    pub async fn dedup_snapshots(
        &self,
        topic: &TopicName,
    ) -> Result<Option<BTreeMap<String, BTreeMap<String, i64>>>, PulsarError> {
        let path = format!("{}/partitioned-internalStats", topic.path());
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => serde_json::from_slice::<PartitionedInternalStats>(&answer.body)
                .map(|stats| {
                    Some(
                        stats
                            .partitions
                            .into_iter()
                            .map(|(partition, mut p)| {
                                let snapshot = p
                                    .cursors
                                    .remove(DEDUP_CURSOR)
                                    .map(|c| c.properties)
                                    .unwrap_or_default();
                                (partition, snapshot)
                            })
                            .collect(),
                    )
                })
                .map_err(|e| {
                    PulsarError::Protocol(format!(
                        "internal stats of '{topic}': {e} in {}",
                        preview(&answer.body)
                    ))
                }),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused(
                "read the internal stats of",
                &topic.to_string(),
                &answer,
            )),
        }
    }

    /// The producer names connected to each partition of the partitioned topic (partition name
    /// → names), from its per-partition stats; `None` when the topic does not exist.
    pub async fn publishers(
        &self,
        topic: &TopicName,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, PulsarError> {
        Ok(self.partition_stats(topic).await?.map(|partitions| {
            partitions
                .into_iter()
                .map(|(partition, p)| {
                    let names = p
                        .publishers
                        .into_iter()
                        .filter_map(|p| p.producer_name)
                        .collect();
                    (partition, names)
                })
                .collect()
        }))
    }

    /// Creates the subscription `name` on `topic` (a partitioned topic: on every partition; or
    /// one partition by its full name) at the oldest message (`earliest`) or after the last.
    /// `false` when it existed already.
    pub async fn create_subscription(
        &self,
        topic: &TopicName,
        name: &str,
        earliest: bool,
    ) -> Result<bool, PulsarError> {
        let path = format!("{}/subscription/{}", topic.path(), segment(name));
        // A message id: (-1, -1) is MessageId.earliest, (i64::MAX, i64::MAX) MessageId.latest.
        let at = if earliest { -1 } else { i64::MAX };
        let body = format!(r#"{{"ledgerId":{at},"entryId":{at},"partitionIndex":-1}}"#);
        let answer = self.send(Method::PUT, &path, Some(body)).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(refused(
                "create the subscription",
                &format!("{name} on {topic}"),
                &answer,
            )),
        }
    }

    /// Moves the subscription's cursor on every partition of `topic` to the first message
    /// published at or after `millis` (ms since the epoch; 0 is the oldest message kept).
    /// The broker disconnects consumers of the subscription while it does so.
    pub async fn reset_cursor_to_time(
        &self,
        topic: &TopicName,
        name: &str,
        millis: i64,
    ) -> Result<(), PulsarError> {
        let path = format!(
            "{}/subscription/{}/resetcursor/{millis}",
            topic.path(),
            segment(name)
        );
        self.send_ok(
            Method::POST,
            &path,
            None,
            "reset the cursor of",
            &format!("{name} on {topic}"),
        )
        .await
        .map(drop)
    }

    /// Acknowledges every message of the subscription on every partition of `topic`: its
    /// cursor moves to the end.
    pub async fn skip_all(&self, topic: &TopicName, name: &str) -> Result<(), PulsarError> {
        let path = format!("{}/subscription/{}/skip_all", topic.path(), segment(name));
        self.send_ok(
            Method::POST,
            &path,
            None,
            "skip the backlog of",
            &format!("{name} on {topic}"),
        )
        .await
        .map(drop)
    }

    /// The transactions open on the cluster's coordinators, or `None` when no coordinator is
    /// loaded yet (coordinators load when a client first uses transactions: until then the
    /// broker answers that it has none).
    pub async fn open_transactions(&self) -> Result<Option<Vec<OpenTransaction>>, PulsarError> {
        // Transactions open longer than 0 ms: all of them, with their open and timeout times.
        let answer = self
            .send(
                Method::GET,
                "/admin/v3/transactions/slowTransactions/0",
                None,
            )
            .await?;
        if !answer.status.is_success() {
            let error = refused("list the open transactions", "transactions", &answer);
            return match &error {
                PulsarError::Refused { reason, .. }
                    if reason.contains("coordinator not found")
                        || reason.contains("Transaction coordinator not found") =>
                {
                    Ok(None)
                }
                _ => Err(error),
            };
        }
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&answer.body)
            .map_err(|e| {
                PulsarError::Protocol(format!(
                    "open transactions: {e} in {}",
                    preview(&answer.body)
                ))
            })?;
        Ok(Some(
            raw.into_iter()
                .map(|(id, m)| OpenTransaction {
                    id: m
                        .get("txnId")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                        .unwrap_or(id),
                    status: m
                        .get("status")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    opened_ms: m.get("openTimestamp").and_then(serde_json::Value::as_i64),
                    timeout_ms: m.get("timeoutAt").and_then(serde_json::Value::as_i64),
                })
                .collect(),
        ))
    }

    /// The stats of each transaction coordinator, by id. Coordinators load on first use, so a
    /// cluster whose coordinators no client has asked for yet answers with an error here.
    pub async fn coordinator_stats(
        &self,
    ) -> Result<BTreeMap<String, CoordinatorStats>, PulsarError> {
        self.get_json(
            "/admin/v3/transactions/coordinatorStats",
            "read the transaction coordinators' stats",
            "transactions",
        )
        .await
    }
}

/// The error for a refused answer.
fn refused(operation: &'static str, resource: &str, answer: &Answer) -> PulsarError {
    PulsarError::Refused {
        operation,
        resource: resource.to_string(),
        status: answer.status.as_u16(),
        reason: reason_of(&answer.body),
    }
}

/// The start of a body, for messages.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("'{}…'", &text[..at]),
        None => format!("'{text}'"),
    }
}

/// An error with its sources, as one line (hyper's own message alone is often "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_name_has_a_tenant_a_namespace_and_a_local_name() {
        let t = TopicName::parse("persistent://acme/orders/created").unwrap_or_else(|| panic!());
        assert_eq!(
            (t.tenant.as_str(), t.namespace.as_str(), t.topic.as_str()),
            ("acme", "orders", "created")
        );
        assert_eq!(TopicName::parse("acme/orders/created"), Some(t.clone()));
        assert_eq!(t.to_string(), "persistent://acme/orders/created");
        assert_eq!(t.path(), "/admin/v2/persistent/acme/orders/created");
        for bad in ["created", "acme/created", "acme//created", "a/b/c/d", ""] {
            assert_eq!(TopicName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("a=b:c d"), "a%3Db%3Ac%20d");
        assert_eq!(segment("plain-name_1.x"), "plain-name_1.x");
    }

    #[test]
    fn a_reason_is_the_first_line_of_pulsars_answer_without_its_stack_trace() {
        let body = br#"{"reason":"\n --- An unexpected error occurred in the server ---\n\nMessage: Transaction coordinator not found! coordinator id : 0\n\nStacktrace:\n\njava.util..."}"#;
        assert_eq!(
            reason_of(body),
            "Transaction coordinator not found! coordinator id : 0"
        );
        assert_eq!(
            reason_of(br#"{"reason":"Tenant does not exist"}"#),
            "Tenant does not exist"
        );
        assert_eq!(reason_of(b"plain text"), "plain text");
        assert_eq!(reason_of(&[b'x'; 1000]).chars().count(), REASON_MAX + 1);
    }

    #[test]
    fn an_admin_url_must_be_http_or_https_with_tls_settings() {
        assert!(PulsarAdmin::new("http://127.0.0.1:8080/", None, None).is_ok());
        for bad in [
            "pulsar://127.0.0.1:6650",
            "127.0.0.1:8080",
            "https://x:8443",
        ] {
            assert!(
                matches!(
                    PulsarAdmin::new(bad, None, None),
                    Err(PulsarError::ClientConfig(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let admin = PulsarAdmin::new("http://127.0.0.1:8080", Some("s3cret".into()), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{admin:?}").contains("s3cret"));
    }
}
