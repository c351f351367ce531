//! Where requests go: any broker, a given node, the leaders of partitions, or the coordinators
//! of groups and transactional ids (`FindCoordinator`); and retrying while those move.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};

use super::error::{check, code};
use super::request::WireRequest;
use super::{TopicPartition, WireClient, WireError, lock};

/// First backoff between retries of routing errors; doubled up to [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest backoff between retries of routing errors.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// `FindCoordinator` key type of a consumer group.
pub(super) const COORDINATOR_GROUP: i8 = 0;
/// `FindCoordinator` key type of a transactional id.
pub(super) const COORDINATOR_TRANSACTION: i8 = 1;

/// Where a request goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    /// Any broker: the known ones first, then the bootstrap servers.
    Any,
    /// This node id.
    Node(i32),
}

impl WireClient {
    /// Sends a request built for the negotiated version to `address` and decodes the answer.
    /// A failed connection is dropped; the request is sent again once on a new connection when
    /// `idempotent`, or when a reused connection turned out to be dead before answering.
    async fn call_address<R: WireRequest, F: Fn(i16) -> R + Sync>(
        &self,
        address: &str,
        cap: Option<i16>,
        idempotent: bool,
        build: &F,
    ) -> Result<(i16, R::Response), WireError> {
        let slot = self.slot(address);
        let mut connection = slot.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reused = connection.is_some();
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => connection.insert(self.connect(address).await?),
            };
            let version = Self::pick_version::<R>(conn, address, cap)?;
            let correlation_id = self.next_correlation_id();
            let frame = self.encode_frame(&build(version), version, correlation_id)?;
            let exchange = tokio::time::timeout(
                self.request_timeout,
                Self::round_trip(
                    &mut conn.stream,
                    address,
                    &frame,
                    correlation_id,
                    R::Response::header_version(version),
                ),
            )
            .await;
            let stale = reused && matches!(exchange, Ok(Err(WireError::Unreachable { .. })));
            let error = match exchange {
                Ok(Ok(mut body)) => {
                    return match R::Response::decode(&mut body, version) {
                        Ok(response) => Ok((version, response)),
                        Err(e) => Err(WireError::Protocol(format!(
                            "decoding {:?} v{version} response from {address}: {e:#}",
                            R::KEY
                        ))),
                    };
                }
                Ok(Err(error)) => error,
                Err(_) => Self::unreachable(
                    address,
                    format!(
                        "{:?} got no answer within {:?}",
                        R::KEY,
                        self.request_timeout
                    ),
                ),
            };
            *connection = None;
            if attempt == 1 && (idempotent || stale) {
                tracing::debug!(address, api = ?R::KEY, %error, "connection failed, retrying");
                continue;
            }
            return Err(error);
        }
    }

    /// Sends to `target`; for [`Target::Any`], tries known brokers and then the bootstrap
    /// servers until one answers.
    pub(super) async fn call<R: WireRequest, F: Fn(i16) -> R + Sync>(
        &self,
        target: Target,
        cap: Option<i16>,
        idempotent: bool,
        build: &F,
    ) -> Result<(i16, R::Response), WireError> {
        match target {
            Target::Node(id) => {
                let address = self.node_address(id).await?;
                self.call_address(&address, cap, idempotent, build).await
            }
            Target::Any => self.call_any(cap, idempotent, build).await,
        }
    }

    /// Sends to the first known broker or bootstrap server that answers.
    pub(super) async fn call_any<R: WireRequest, F: Fn(i16) -> R + Sync>(
        &self,
        cap: Option<i16>,
        idempotent: bool,
        build: &F,
    ) -> Result<(i16, R::Response), WireError> {
        let mut candidates: Vec<String> = lock(&self.nodes).values().cloned().collect();
        for address in &self.bootstrap {
            if !candidates.contains(address) {
                candidates.push(address.clone());
            }
        }
        let mut last = WireError::Protocol("no bootstrap servers configured".into());
        for address in candidates {
            match self.call_address(&address, cap, idempotent, build).await {
                Err(error @ WireError::Unreachable { .. }) => last = error,
                other => return other,
            }
        }
        Err(last)
    }

    /// `host:port` of node `id`, refreshing the node map from metadata when it is unknown.
    async fn node_address(&self, id: i32) -> Result<String, WireError> {
        if let Some(address) = lock(&self.nodes).get(&id) {
            return Ok(address.clone());
        }
        self.fetch_metadata(Some(&[])).await?;
        lock(&self.nodes)
            .get(&id)
            .cloned()
            .ok_or_else(|| WireError::Protocol(format!("broker {id} is not in the cluster")))
    }

    pub(super) fn remember_node(&self, id: i32, host: &str, port: i32) {
        lock(&self.nodes).insert(id, format!("{host}:{port}"));
    }

    /// Runs `attempt` again while it fails with routing errors (leader or coordinator moving or
    /// loading), backing off, until the request timeout has passed.
    pub(super) async fn retrying<T, Fut>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, WireError>
    where
        Fut: std::future::Future<Output = Result<T, WireError>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match attempt().await {
                Err(error) if error.is_routing() && Instant::now() + backoff < deadline => {
                    tracing::debug!(what, %error, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }

    /// Leader node of every partition of `topics` (-1 where there is none).
    async fn leaders(
        &self,
        topics: &BTreeSet<&str>,
    ) -> Result<HashMap<TopicPartition, i32>, WireError> {
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let metadata = self.metadata(Some(&names)).await?;
        let mut leaders = HashMap::new();
        for topic in metadata.topics {
            for p in topic.partitions {
                leaders.insert(
                    TopicPartition::new(topic.name.clone(), p.partition),
                    p.leader,
                );
            }
        }
        Ok(leaders)
    }

    /// Groups `partitions` by their leader, failing for unknown partitions or ones without one.
    pub(super) async fn by_leader<'a>(
        &self,
        api: &'static str,
        partitions: impl Iterator<Item = &'a TopicPartition> + Clone,
    ) -> Result<BTreeMap<i32, Vec<&'a TopicPartition>>, WireError> {
        let topics: BTreeSet<&str> = partitions.clone().map(|tp| tp.topic.as_str()).collect();
        let leaders = self.leaders(&topics).await?;
        let mut grouped: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
        for tp in partitions {
            match leaders.get(tp) {
                None => check(api, tp, code::UNKNOWN_TOPIC_OR_PARTITION, None)?,
                Some(&leader) if leader < 0 => check(api, tp, code::LEADER_NOT_AVAILABLE, None)?,
                Some(&leader) => grouped.entry(leader).or_default().push(tp),
            }
        }
        Ok(grouped)
    }

    /// Coordinator node of each key (`key_type` 0: group, 1: transactional id).
    pub(super) async fn find_coordinators(
        &self,
        key_type: i8,
        keys: &[String],
    ) -> Result<BTreeMap<String, i32>, WireError> {
        let api = "FindCoordinator";
        self.retrying(api, || async move {
            let mut out = BTreeMap::new();
            // v4+ looks up many keys at once, older versions one key per request.
            for first in keys {
                let (version, response) = self
                    .call(Target::Any, None, true, &|version| {
                        let request = FindCoordinatorRequest::default().with_key_type(key_type);
                        if version >= 4 {
                            request.with_coordinator_keys(
                                keys.iter()
                                    .map(|k| StrBytes::from_string(k.clone()))
                                    .collect(),
                            )
                        } else {
                            request.with_key(StrBytes::from_string(first.clone()))
                        }
                    })
                    .await?;
                if version >= 4 {
                    for c in response.coordinators {
                        check(api, &c.key, c.error_code, c.error_message.as_ref())?;
                        self.remember_node(c.node_id.0, &c.host, c.port);
                        out.insert(c.key.to_string(), c.node_id.0);
                    }
                    break;
                }
                check(
                    api,
                    first,
                    response.error_code,
                    response.error_message.as_ref(),
                )?;
                self.remember_node(response.node_id.0, &response.host, response.port);
                out.insert(first.clone(), response.node_id.0);
            }
            Ok(out)
        })
        .await
    }
}

/// Keys per coordinator node.
pub(super) fn invert(coordinators: &BTreeMap<String, i32>) -> BTreeMap<i32, Vec<&str>> {
    let mut out: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for (key, node) in coordinators {
        out.entry(*node).or_default().push(key);
    }
    out
}

pub(super) fn coordinator_of(
    coordinators: &BTreeMap<String, i32>,
    key: &str,
) -> Result<i32, WireError> {
    coordinators
        .get(key)
        .copied()
        .ok_or_else(|| WireError::Protocol(format!("FindCoordinator did not answer for '{key}'")))
}
