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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    self, AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    BrokerId, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, DescribeProducersRequest, DescribeTransactionsRequest,
    DescribeUserScramCredentialsRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest,
    ListGroupsRequest, ListOffsetsRequest, ListTransactionsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, ProducerId, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName, TransactionalId,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::acl::{self, AclBinding};
use super::scram_credential::{ScramCredential, ScramCredentialError, ScramMechanism};
use super::security::{Mechanism, Scram, Security, plain_message};
use tokio::sync::Mutex;

/// Largest response frame accepted; anything bigger means the stream is out of step.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// The `ApiVersions` version asked first: v3 carries the client name and the finalized features.
const API_VERSIONS_VERSION: i16 = 3;
/// Name this client reports in `ApiVersions` (Kafka only allows `[a-zA-Z0-9.-]`).
const CLIENT_SOFTWARE_NAME: &str = "exactly-wire";
/// Highest `Produce` version for a batch no coordinator knows: v12+ has the broker add the
/// partition to the transaction through the coordinator (KIP-890), whatever the verification
/// setting.
const UNTRACKED_PRODUCE_VERSION: i16 = 11;
/// First backoff between retries of routing errors; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest backoff between retries of routing errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// `DescribeConfigs` resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// `DescribeConfigs` resource type of a broker.
const RESOURCE_BROKER: i8 = 4;
/// `FindCoordinator` key type of a consumer group.
const COORDINATOR_GROUP: i8 = 0;
/// `FindCoordinator` key type of a transactional id.
const COORDINATOR_TRANSACTION: i8 = 1;

/// Kafka error codes used by name below.
mod code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
}

/// Failures talking to Kafka over the wire protocol.
#[derive(thiserror::Error, Debug)]
pub enum WireError {
    /// No answer from a broker: connect, read or write failed, or the request timed out.
    #[error("cannot reach Kafka broker {address}: {message}")]
    Unreachable {
        /// `host:port` of the broker.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// A message could not be encoded or decoded, or the broker and this client share no version
    /// of an API.
    #[error("Kafka protocol error: {0}")]
    Protocol(String),
    /// A broker answered with an error code.
    #[error("Kafka {api} for '{resource}' failed: {name} ({code}){}", message_suffix(.message))]
    Broker {
        /// The API that failed, e.g. `ListOffsets`.
        api: &'static str,
        /// What the request was about (topic, partition, group, transactional id, broker).
        resource: String,
        /// Kafka's error code.
        code: i16,
        /// Kafka's name for the code, e.g. `NOT_COORDINATOR`.
        name: &'static str,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(message) if !message.is_empty() => format!(": {message}"),
        _ => String::new(),
    }
}

impl WireError {
    /// Stable CamelCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Unreachable { .. } => "KafkaUnreachable",
            WireError::Protocol(_) => "KafkaProtocolError",
            WireError::Broker { .. } => "KafkaRefused",
        }
    }

    /// The Kafka error code of a [`WireError::Broker`].
    pub fn code(&self) -> Option<i16> {
        match self {
            WireError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether Kafka marks the error code as retriable (the same request may succeed later).
    pub fn is_retriable(&self) -> bool {
        match self {
            WireError::Unreachable { .. } => true,
            WireError::Protocol(_) => false,
            WireError::Broker { code, .. } => kafka_protocol::ResponseError::try_from_code(*code)
                .is_some_and(|error| error.is_retriable()),
        }
    }

    /// Errors that mean "ask again, maybe elsewhere": leaders and coordinators moving or loading.
    fn is_routing(&self) -> bool {
        matches!(
            self.code(),
            Some(
                code::LEADER_NOT_AVAILABLE
                    | code::NOT_LEADER_OR_FOLLOWER
                    | code::REQUEST_TIMED_OUT
                    | code::COORDINATOR_LOAD_IN_PROGRESS
                    | code::COORDINATOR_NOT_AVAILABLE
                    | code::NOT_COORDINATOR
                    | code::KAFKA_STORAGE_ERROR
                    | code::FENCED_LEADER_EPOCH
                    | code::UNKNOWN_LEADER_EPOCH
                    | code::OFFSET_NOT_AVAILABLE
                    | code::UNSTABLE_OFFSET_COMMIT
            )
        )
    }

    fn protocol(what: impl fmt::Display) -> Self {
        WireError::Protocol(what.to_string())
    }
}

/// `Ok(())` for error code 0, else a [`WireError::Broker`].
fn check(
    api: &'static str,
    resource: impl fmt::Display,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), WireError> {
    if code == 0 {
        return Ok(());
    }
    Err(WireError::Broker {
        api,
        resource: resource.to_string(),
        code,
        name: error_name(code),
        message: message.map(|m| m.to_string()),
    })
}

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The cluster as `Metadata` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The cluster id (`None` only from very old brokers).
    pub cluster_id: Option<String>,
    /// The active controller's id as brokers see it (-1 when unknown; KRaft brokers report a
    /// random broker here since clients cannot reach the controllers).
    pub controller_id: i32,
    /// Brokers, sorted by id.
    pub brokers: Vec<BrokerMetadata>,
    /// Topics, sorted by name. Topics asked for that do not exist are left out.
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    /// The topic called `name`, if it was reported.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// One broker of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when configured.
    pub rack: Option<String>,
}

/// One topic of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id in Kafka's text form (22 characters of URL-safe base64, as `kafka-topics.sh`
    /// prints it).
    pub topic_id: String,
    /// Whether this is one of Kafka's internal topics (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Node ids of the replicas that are offline.
    pub offline_replicas: Vec<i32>,
}

/// Where a configuration value comes from (Kafka's `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    DynamicTopic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically as the default of every broker.
    DynamicDefaultBroker,
    /// From the broker's properties file.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Any other source, by Kafka's id (0 unknown, 6 broker logger, 7 client metrics, 8 group).
    Other(i8),
}

impl ConfigSource {
    pub(crate) fn from_id(id: i8) -> Self {
        match id {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One configuration entry of a topic or broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The value; `None` when unset or sensitive.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be changed at runtime.
    pub read_only: bool,
    /// Whether the value is a secret (and therefore not returned).
    pub sensitive: bool,
}

/// Which offset `ListOffsets` should look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset, or the last stable offset under [`Isolation::ReadCommitted`].
    Latest,
    /// The first offset whose timestamp is at or after this many milliseconds since the epoch
    /// (-1 in the answer when there is none).
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// The isolation level of an offset lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// See every record, including those of open and aborted transactions.
    ReadUncommitted,
    /// See only committed records: `Latest` is the last stable offset.
    ReadCommitted,
}

/// A consumer group as `ListGroups` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups, empty for groups that only hold offsets).
    pub protocol_type: String,
    /// State (`Empty`, `Stable`, ...), from brokers speaking `ListGroups` v4+.
    pub state: Option<String>,
    /// Group type (`classic`, `consumer`, `share`, `streams`), from `ListGroups` v5+.
    pub group_type: Option<String>,
}

/// A classic consumer group as `DescribeGroups` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead` (a group
    /// that does not exist, from brokers before `DescribeGroups` v6).
    pub state: String,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol, e.g. the assignor (`range`, ...).
    pub protocol: String,
    /// Members, as the coordinator lists them.
    pub members: Vec<GroupMember>,
}

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id assigned by the coordinator.
    pub member_id: String,
    /// Static membership id, when the member set one.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the broker saw it.
    pub client_host: String,
    /// Topics assigned to the member (decoded for the `consumer` protocol; empty otherwise).
    pub assigned_topics: Vec<String>,
}

/// A transaction as `ListTransactions` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionListing {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id currently holding the transactional id.
    pub producer_id: i64,
    /// State, e.g. `Ongoing`, `PrepareCommit`, `CompleteCommit`, `Empty`.
    pub state: String,
}

/// A transaction as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// Node id of the transaction coordinator.
    pub coordinator: i32,
    /// State, e.g. `Ongoing`.
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Transaction timeout in milliseconds.
    pub timeout_ms: i32,
    /// When the current transaction started, in milliseconds since the epoch; -1 when none is
    /// open.
    pub start_time_ms: i64,
    /// Partitions in the current transaction, sorted.
    pub partitions: Vec<TopicPartition>,
}

/// A producer with state on a partition, as `DescribeProducers` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerState {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the producer's last record on this partition.
    pub last_sequence: i32,
    /// Timestamp of the producer's last record on this partition.
    pub last_timestamp: i64,
    /// Epoch of the coordinator that wrote the producer's last transaction marker (-1 if none).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition; -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// A request this client can send with [`WireClient::send`]: a `kafka-protocol` request type and
/// the response it gets. (`kafka_protocol::protocol::Request` only exists when that crate is built
/// with both its `client` and `broker` features.)
pub trait WireRequest: Message + Encodable + HeaderVersion {
    /// The API key.
    const KEY: ApiKey;
    /// The response to this request.
    type Response: Message + Decodable + HeaderVersion;
}

macro_rules! wire_requests {
    ($($key:ident: $request:ident => $response:ident,)*) => {
        $(
            impl WireRequest for messages::$request {
                const KEY: ApiKey = ApiKey::$key;
                type Response = messages::$response;
            }
        )*
    };
}

wire_requests! {
    Produce: ProduceRequest => ProduceResponse,
    Fetch: FetchRequest => FetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    JoinGroup: JoinGroupRequest => JoinGroupResponse,
    Heartbeat: HeartbeatRequest => HeartbeatResponse,
    LeaveGroup: LeaveGroupRequest => LeaveGroupResponse,
    SyncGroup: SyncGroupRequest => SyncGroupResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    ListGroups: ListGroupsRequest => ListGroupsResponse,
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
    DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse,
    DeleteRecords: DeleteRecordsRequest => DeleteRecordsResponse,
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest => OffsetForLeaderEpochResponse,
    AddPartitionsToTxn: AddPartitionsToTxnRequest => AddPartitionsToTxnResponse,
    AddOffsetsToTxn: AddOffsetsToTxnRequest => AddOffsetsToTxnResponse,
    EndTxn: EndTxnRequest => EndTxnResponse,
    WriteTxnMarkers: WriteTxnMarkersRequest => WriteTxnMarkersResponse,
    TxnOffsetCommit: TxnOffsetCommitRequest => TxnOffsetCommitResponse,
    DescribeAcls: DescribeAclsRequest => DescribeAclsResponse,
    CreateAcls: CreateAclsRequest => CreateAclsResponse,
    DeleteAcls: DeleteAclsRequest => DeleteAclsResponse,
    DescribeConfigs: DescribeConfigsRequest => DescribeConfigsResponse,
    AlterConfigs: AlterConfigsRequest => AlterConfigsResponse,
    DescribeLogDirs: DescribeLogDirsRequest => DescribeLogDirsResponse,
    CreatePartitions: CreatePartitionsRequest => CreatePartitionsResponse,
    DeleteGroups: DeleteGroupsRequest => DeleteGroupsResponse,
    ElectLeaders: ElectLeadersRequest => ElectLeadersResponse,
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse,
    AlterPartitionReassignments: AlterPartitionReassignmentsRequest => AlterPartitionReassignmentsResponse,
    ListPartitionReassignments: ListPartitionReassignmentsRequest => ListPartitionReassignmentsResponse,
    OffsetDelete: OffsetDeleteRequest => OffsetDeleteResponse,
    DescribeClientQuotas: DescribeClientQuotasRequest => DescribeClientQuotasResponse,
    AlterClientQuotas: AlterClientQuotasRequest => AlterClientQuotasResponse,
    DescribeQuorum: DescribeQuorumRequest => DescribeQuorumResponse,
    UpdateFeatures: UpdateFeaturesRequest => UpdateFeaturesResponse,
    DescribeCluster: DescribeClusterRequest => DescribeClusterResponse,
    DescribeProducers: DescribeProducersRequest => DescribeProducersResponse,
    DescribeTransactions: DescribeTransactionsRequest => DescribeTransactionsResponse,
    ListTransactions: ListTransactionsRequest => ListTransactionsResponse,
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse,
    ListConfigResources: ListConfigResourcesRequest => ListConfigResourcesResponse,
    DescribeTopicPartitions: DescribeTopicPartitionsRequest => DescribeTopicPartitionsResponse,
    ShareGroupDescribe: ShareGroupDescribeRequest => ShareGroupDescribeResponse,
    DescribeUserScramCredentials: DescribeUserScramCredentialsRequest => DescribeUserScramCredentialsResponse,
    AlterUserScramCredentials: AlterUserScramCredentialsRequest => AlterUserScramCredentialsResponse,
}

/// A byte stream to a broker: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// An open connection and what its broker said about itself.
struct Connection {
    stream: Box<dyn Io>,
    /// Supported versions per API key.
    versions: HashMap<i16, (i16, i16)>,
}

/// One connection slot per broker address; `None` until used or after a failure.
type Slot = Arc<Mutex<Option<Connection>>>;

/// Where a request goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Any broker: the known ones first, then the bootstrap servers.
    Any,
    /// This node id.
    Node(i32),
}

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

    // ----- connections and framing -------------------------------------------------------------

    fn slot(&self, address: &str) -> Slot {
        lock(&self.connections)
            .entry(address.to_string())
            .or_default()
            .clone()
    }

    /// Requests sent so far (handshakes included): what a batched observation costs.
    pub fn requests_sent(&self) -> u64 {
        u64::try_from(self.correlation_id.load(Ordering::Relaxed) - 1).unwrap_or(0)
    }

    fn next_correlation_id(&self) -> i32 {
        self.correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn unreachable(address: &str, message: impl fmt::Display) -> WireError {
        WireError::Unreachable {
            address: address.to_string(),
            message: message.to_string(),
        }
    }

    /// Encodes a request frame (size, header, body) for `version`.
    fn encode_frame<R: WireRequest>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, WireError> {
        if let Some(count) = &self.on_request {
            count(&format!("{:?}", R::KEY));
        }
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| request.encode(&mut buf, version));
        if let Err(e) = encoded {
            return Err(WireError::Protocol(format!(
                "encoding {:?} v{version}: {e:#}",
                R::KEY
            )));
        }
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| WireError::protocol(format!("{:?} request too large", R::KEY)))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Writes one frame and reads the answer with the same correlation id; returns the response
    /// body (after the header). Any error leaves the stream unusable.
    async fn round_trip(
        stream: &mut dyn Io,
        address: &str,
        frame: &[u8],
        correlation_id: i32,
        response_header_version: i16,
    ) -> Result<Bytes, WireError> {
        stream
            .write_all(frame)
            .await
            .map_err(|e| Self::unreachable(address, format!("write: {e}")))?;
        let size = stream
            .read_i32()
            .await
            .map_err(|e| Self::unreachable(address, format!("read: {e}")))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= MAX_FRAME_BYTES)
            .ok_or_else(|| WireError::protocol(format!("response frame of {size} bytes")))?;
        let mut body = vec![0u8; size];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| Self::unreachable(address, format!("read: {e}")))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, response_header_version)
            .map_err(|e| WireError::Protocol(format!("decoding response header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(WireError::Protocol(format!(
                "response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok(body)
    }

    /// Wraps `tcp` in TLS, verifying the broker's certificate for the host of `address`.
    async fn tls_handshake(
        config: &Arc<rustls::ClientConfig>,
        tcp: TcpStream,
        address: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, WireError> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| WireError::Protocol(format!("TLS server name '{host}': {e}")))?;
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Self::unreachable(address, format!("TLS handshake: {e}")))
    }

    /// One request on a connection being set up (before it is shared).
    async fn setup_call<R: WireRequest>(
        &self,
        connection: &mut Connection,
        address: &str,
        request: &R,
    ) -> Result<R::Response, WireError> {
        let version = Self::pick_version::<R>(connection, address, None)?;
        let correlation_id = self.next_correlation_id();
        let frame = self.encode_frame(request, version, correlation_id)?;
        let mut body = Self::round_trip(
            connection.stream.as_mut(),
            address,
            &frame,
            correlation_id,
            R::Response::header_version(version),
        )
        .await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| WireError::Protocol(format!("decoding {:?}: {e:#}", R::KEY)))
    }

    /// SASL authentication (KIP-152: `SaslHandshake` then `SaslAuthenticate` frames).
    async fn authenticate(
        &self,
        connection: &mut Connection,
        address: &str,
        mechanism: Mechanism,
        username: &str,
        password: &str,
    ) -> Result<(), WireError> {
        let handshake = self
            .setup_call(
                connection,
                address,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        if handshake.error_code != 0 {
            let offered: Vec<String> = handshake.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(WireError::Broker {
                api: "SaslHandshake",
                resource: address.to_string(),
                code: handshake.error_code,
                name: error_name(handshake.error_code),
                message: Some(format!(
                    "mechanism {} not enabled; the broker offers {}",
                    mechanism.name(),
                    offered.join(", ")
                )),
            });
        }
        let mut step = async |bytes: Vec<u8>| -> Result<Bytes, WireError> {
            let response = self
                .setup_call(
                    connection,
                    address,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                )
                .await?;
            check(
                "SaslAuthenticate",
                format!("{username}@{address}"),
                response.error_code,
                response.error_message.as_ref(),
            )?;
            Ok(response.auth_bytes)
        };
        match mechanism {
            Mechanism::Plain => {
                step(plain_message(username, password)).await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let scram =
                    Scram::new(mechanism, username, password).map_err(WireError::Protocol)?;
                let server_first = step(scram.client_first().into_bytes()).await?;
                let last = scram
                    .client_final(&String::from_utf8_lossy(&server_first))
                    .map_err(WireError::Protocol)?;
                let server_final = step(last.message.clone().into_bytes()).await?;
                last.verify(&String::from_utf8_lossy(&server_final))
                    .map_err(WireError::Protocol)?;
            }
        }
        Ok(())
    }

    /// Opens a connection and asks the broker which API versions it supports.
    async fn connect(&self, address: &str) -> Result<Connection, WireError> {
        let connecting = tokio::time::timeout(self.request_timeout, async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| Self::unreachable(address, format!("connect: {e}")))?;
            tcp.set_nodelay(true)
                .map_err(|e| Self::unreachable(address, format!("connect: {e}")))?;
            let mut stream: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some(config) => Box::new(Self::tls_handshake(config, tcp, address).await?),
            };
            let mut version = API_VERSIONS_VERSION;
            loop {
                let request = ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
                let correlation_id = self.next_correlation_id();
                let frame = self.encode_frame(&request, version, correlation_id)?;
                let mut body = Self::round_trip(
                    &mut stream,
                    address,
                    &frame,
                    correlation_id,
                    ApiVersionsResponse::header_version(version),
                )
                .await?;
                // A broker that does not know this ApiVersions version says so in a v0 body,
                // whose first field is the error code like in every version.
                let error_code = body.as_ref().get(..2).map(|mut b| b.get_i16());
                if error_code == Some(code::UNSUPPORTED_VERSION) && version > 0 {
                    tracing::debug!(address, version, "ApiVersions unsupported, retrying v0");
                    version = 0;
                    continue;
                }
                let response = ApiVersionsResponse::decode(&mut body, version)
                    .map_err(|e| WireError::Protocol(format!("decoding ApiVersions: {e:#}")))?;
                check("ApiVersions", address, response.error_code, None)?;
                let versions = response
                    .api_keys
                    .iter()
                    .map(|k| (k.api_key, (k.min_version, k.max_version)))
                    .collect();
                let mut connection = Connection { stream, versions };
                if let Some((mechanism, username, password)) = self.security.sasl.clone() {
                    self.authenticate(&mut connection, address, mechanism, &username, &password)
                        .await?;
                }
                tracing::debug!(address, "connected to Kafka broker");
                return Ok(connection);
            }
        });
        match connecting.await {
            Ok(result) => result,
            Err(_) => Err(Self::unreachable(
                address,
                format!("no answer within {:?}", self.request_timeout),
            )),
        }
    }

    /// The version of `R` to use with a broker: the highest both sides support, at most `cap`.
    fn pick_version<R: WireRequest>(
        connection: &Connection,
        address: &str,
        cap: Option<i16>,
    ) -> Result<i16, WireError> {
        let Some(&(broker_min, broker_max)) = connection.versions.get(&(R::KEY as i16)) else {
            return Err(WireError::Protocol(format!(
                "broker {address} does not support {:?}",
                R::KEY
            )));
        };
        let min = broker_min.max(R::VERSIONS.min);
        let max = broker_max.min(R::VERSIONS.max).min(cap.unwrap_or(i16::MAX));
        if min > max {
            return Err(WireError::Protocol(format!(
                "no common {:?} version: broker {address} supports {broker_min}..{broker_max}, \
                 this client {}..{}{}",
                R::KEY,
                R::VERSIONS.min,
                R::VERSIONS.max,
                cap.map(|c| format!(" (capped at {c})")).unwrap_or_default(),
            )));
        }
        Ok(max)
    }

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
    async fn call<R: WireRequest, F: Fn(i16) -> R + Sync>(
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
    async fn call_any<R: WireRequest, F: Fn(i16) -> R + Sync>(
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

    fn remember_node(&self, id: i32, host: &str, port: i32) {
        lock(&self.nodes).insert(id, format!("{host}:{port}"));
    }

    /// Runs `attempt` again while it fails with routing errors (leader or coordinator moving or
    /// loading), backing off, until the request timeout has passed.
    async fn retrying<T, Fut>(
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

    // ----- generic requests --------------------------------------------------------------------

    /// Sends any request to `broker` (or any broker when `None`) at the highest version both the
    /// broker and `kafka-protocol` support, and returns the response as is: error codes in it
    /// are not checked. The request is sent again once on a fresh connection only when a reused
    /// connection turned out to be dead.
    pub async fn send<R: WireRequest + Clone + Sync>(
        &self,
        broker: Option<i32>,
        request: R,
    ) -> Result<R::Response, WireError> {
        Ok(self.send_versioned(broker, None, request).await?.1)
    }

    /// Like [`WireClient::send`], at most at version `max_version`; also returns the version
    /// used, for requests whose fields differ between versions.
    pub async fn send_versioned<R: WireRequest + Clone + Sync>(
        &self,
        broker: Option<i32>,
        max_version: Option<i16>,
        request: R,
    ) -> Result<(i16, R::Response), WireError> {
        let target = broker.map_or(Target::Any, Target::Node);
        self.call(target, max_version, false, &|_| request.clone())
            .await
    }

    // ----- cluster -----------------------------------------------------------------------------

    /// Raw `Metadata` answer for `topics` (`None`: all); records the broker addresses.
    async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<messages::MetadataResponse, WireError> {
        let build = |version: i16| {
            let topics = topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(topic_name(name)))
                    })
                    .collect()
            });
            // Versions before 4 cannot say "do not create"; Kafka 4 does not speak those.
            MetadataRequest::default()
                .with_topics(topics)
                .with_allow_auto_topic_creation(version < 4)
        };
        let (_, response) = self.call_any(None, true, &build).await?;
        check("Metadata", "cluster", response.error_code, None)?;
        for b in &response.brokers {
            self.remember_node(b.node_id.0, &b.host, b.port);
        }
        Ok(response)
    }

    /// Cluster id, brokers and the given topics (`None`: every topic). Topics that do not exist
    /// are left out of the answer. Also refreshes the client's map of broker addresses.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata, WireError> {
        let response = self.fetch_metadata(topics).await?;
        let mut brokers: Vec<BrokerMetadata> = response
            .brokers
            .iter()
            .map(|b| BrokerMetadata {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);

        let mut out = Vec::new();
        for topic in response.topics {
            let name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            if topic.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                continue;
            }
            check("Metadata", &name, topic.error_code, None)?;
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            out.push(TopicMetadata {
                name,
                topic_id: kafka_uuid_string(topic.topic_id.as_bytes()),
                internal: topic.is_internal,
                partitions,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics: out,
        })
    }

    /// Cluster-wide finalized feature levels (`ApiVersions` v3+), e.g. `metadata.version` and
    /// `transaction.version`. Empty when the broker does not report them.
    pub async fn finalized_features(&self) -> Result<BTreeMap<String, i16>, WireError> {
        let build = |_| {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
        };
        let (version, response) = self
            .call(Target::Any, Some(API_VERSIONS_VERSION), true, &build)
            .await?;
        check("ApiVersions", "cluster", response.error_code, None)?;
        if version < 3 || response.finalized_features_epoch < 0 {
            return Ok(BTreeMap::new());
        }
        Ok(response
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.max_version_level))
            .collect())
    }

    /// Every configuration entry of broker `broker`, asked of that broker.
    pub async fn describe_broker_configs(
        &self,
        broker: i32,
    ) -> Result<BTreeMap<String, ConfigEntry>, WireError> {
        let name = broker.to_string();
        let mut configs = self
            .describe_configs(
                Target::Node(broker),
                RESOURCE_BROKER,
                std::slice::from_ref(&name),
            )
            .await?;
        Ok(configs.remove(&name).unwrap_or_default())
    }

    /// Every configuration entry of each topic, in one request. Topics that do not exist are left
    /// out of the answer.
    pub async fn describe_topic_configs(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, ConfigEntry>>, WireError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.describe_configs(Target::Any, RESOURCE_TOPIC, topics)
            .await
    }

    async fn describe_configs(
        &self,
        target: Target,
        resource_type: i8,
        names: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, ConfigEntry>>, WireError> {
        let build = |_| {
            DescribeConfigsRequest::default().with_resources(
                names
                    .iter()
                    .map(|name| {
                        messages::describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(resource_type)
                            .with_resource_name(StrBytes::from_string(name.clone()))
                            .with_configuration_keys(None)
                    })
                    .collect(),
            )
        };
        let (_, response) = self.call(target, None, true, &build).await?;
        let mut out = BTreeMap::new();
        for result in response.results {
            let name = result.resource_name.to_string();
            if resource_type == RESOURCE_TOPIC
                && result.error_code == code::UNKNOWN_TOPIC_OR_PARTITION
            {
                continue;
            }
            check(
                "DescribeConfigs",
                &name,
                result.error_code,
                result.error_message.as_ref(),
            )?;
            let entries = result
                .configs
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        ConfigEntry {
                            value: c.value.map(|v| v.to_string()),
                            source: ConfigSource::from_id(c.config_source),
                            read_only: c.read_only,
                            sensitive: c.is_sensitive,
                        },
                    )
                })
                .collect();
            out.insert(name, entries);
        }
        Ok(out)
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
    async fn by_leader<'a>(
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

    // ----- offsets -----------------------------------------------------------------------------

    /// Looks up offsets, one request per partition leader. With [`OffsetSpec::Latest`],
    /// [`Isolation::ReadCommitted`] gives the last stable offset (the first offset of the oldest
    /// open transaction) and [`Isolation::ReadUncommitted`] the log end offset.
    pub async fn list_offsets(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
        isolation: Isolation,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        self.retrying("ListOffsets", || async move {
            self.list_offsets_once(requests, isolation).await
        })
        .await
    }

    async fn list_offsets_once(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
        isolation: Isolation,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        let specs: HashMap<&TopicPartition, OffsetSpec> =
            requests.iter().map(|(tp, spec)| (tp, *spec)).collect();
        let grouped = self
            .by_leader("ListOffsets", requests.iter().map(|(tp, _)| tp))
            .await?;
        let timeout_ms = duration_ms(self.request_timeout);
        let mut out = BTreeMap::new();
        for (leader, partitions) in grouped {
            let build = |version: i16| {
                let mut topics: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                for tp in &partitions {
                    let spec = specs.get(tp).copied().unwrap_or(OffsetSpec::Latest);
                    topics.entry(tp.topic.as_str()).or_default().push(
                        messages::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_timestamp(spec.timestamp()),
                    );
                }
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(match isolation {
                        Isolation::ReadUncommitted => 0,
                        Isolation::ReadCommitted => 1,
                    })
                    .with_timeout_ms(if version >= 10 { timeout_ms } else { 0 })
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                messages::list_offsets_request::ListOffsetsTopic::default()
                                    .with_name(topic_name(name))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
            };
            let (_, response) = self.call(Target::Node(leader), None, true, &build).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check("ListOffsets", &tp, p.error_code, None)?;
                    out.insert(tp, p.offset);
                }
            }
        }
        Ok(out)
    }

    // ----- groups ------------------------------------------------------------------------------

    /// Every group known to any broker of the cluster.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, WireError> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut groups = BTreeMap::new();
        for broker in metadata.brokers {
            let resource = format!("broker {}", broker.id);
            let resource = &resource;
            let response = self
                .retrying("ListGroups", || async move {
                    let (version, response) = self
                        .call(Target::Node(broker.id), None, true, &|_| {
                            ListGroupsRequest::default()
                        })
                        .await?;
                    check("ListGroups", resource, response.error_code, None)?;
                    Ok((version, response))
                })
                .await?;
            let (version, response) = response;
            for g in response.groups {
                let group_id = g.group_id.0.to_string();
                groups.insert(
                    group_id.clone(),
                    GroupListing {
                        group_id,
                        protocol_type: g.protocol_type.to_string(),
                        state: (version >= 4).then(|| g.group_state.to_string()),
                        group_type: (version >= 5).then(|| g.group_type.to_string()),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Coordinator node of each key (`key_type` 0: group, 1: transactional id).
    async fn find_coordinators(
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

    /// Describes classic consumer groups, asking each group's coordinator. A group that does not
    /// exist is an error `GROUP_ID_NOT_FOUND` (69) from Kafka 4 (`DescribeGroups` v6), or state
    /// `Dead` from older brokers; so is a group using the new consumer protocol (KIP-848).
    pub async fn describe_groups(
        &self,
        ids: &[String],
    ) -> Result<Vec<GroupDescription>, WireError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying("DescribeGroups", || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, ids).await?;
            let mut out = Vec::new();
            for (coordinator, groups) in invert(&coordinators) {
                let (_, response) = self
                    .call(Target::Node(coordinator), None, true, &|_| {
                        DescribeGroupsRequest::default()
                            .with_groups(groups.iter().map(|g| group_id(g)).collect())
                    })
                    .await?;
                for g in response.groups {
                    check(
                        "DescribeGroups",
                        &g.group_id.0,
                        g.error_code,
                        g.error_message.as_ref(),
                    )?;
                    out.push(GroupDescription {
                        group_id: g.group_id.0.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        protocol: g.protocol_data.to_string(),
                        members: g
                            .members
                            .iter()
                            .map(|m| GroupMember {
                                member_id: m.member_id.to_string(),
                                group_instance_id: m
                                    .group_instance_id
                                    .as_ref()
                                    .map(|i| i.to_string()),
                                client_id: m.client_id.to_string(),
                                client_host: m.client_host.to_string(),
                                assigned_topics: assigned_topics(
                                    &g.protocol_type,
                                    &m.member_assignment,
                                ),
                            })
                            .collect(),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// The group's committed offsets for every partition it has one for (`OffsetFetch` with all
    /// topics and `require_stable`, so offsets pending in a transaction make it wait and retry
    /// until that transaction ends).
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        self.committed_offsets_of(group, true).await
    }

    /// [`Self::committed_offsets`], with `require_stable` as given.
    async fn committed_offsets_of(
        &self,
        group: &str,
        require_stable: bool,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        let api = "OffsetFetch";
        let keys_owned = [group.to_string()];
        let keys: &[String] = &keys_owned;
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, keys).await?;
            let coordinator = coordinator_of(&coordinators, group)?;
            let (version, response) = self
                .call(Target::Node(coordinator), None, true, &|version| {
                    // v8+ asks for groups in an array; before, for one group at the top level.
                    let request = OffsetFetchRequest::default()
                        .with_require_stable(require_stable && version >= 7);
                    if version >= 8 {
                        request.with_groups(vec![
                            messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(group_id(group))
                                .with_topics(None),
                        ])
                    } else {
                        request.with_group_id(group_id(group)).with_topics(None)
                    }
                })
                .await?;
            let mut out = BTreeMap::new();
            let mut add = |tp: TopicPartition, offset: i64, error_code: i16| {
                check(api, format!("{group}/{tp}"), error_code, None)?;
                if offset >= 0 {
                    out.insert(tp, offset);
                }
                Ok::<(), WireError>(())
            };
            if version >= 8 {
                for g in response.groups {
                    check(api, group, g.error_code, None)?;
                    for topic in g.topics {
                        for p in topic.partitions {
                            let tp =
                                TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            add(tp, p.committed_offset, p.error_code)?;
                        }
                    }
                }
            } else {
                check(api, group, response.error_code, None)?;
                for topic in response.topics {
                    for p in topic.partitions {
                        let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                        add(tp, p.committed_offset, p.error_code)?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Committed offsets of many groups: one `OffsetFetch` (v8+, groups in an array) per group
    /// coordinator, whatever the number of groups. Brokers older than v8 get one request per
    /// group.
    pub async fn committed_offsets_of_groups(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<TopicPartition, i64>>, WireError> {
        Ok(self
            .committed_of_groups(groups)
            .await?
            .into_iter()
            .map(|(group, offsets)| {
                let offsets = offsets.into_iter().map(|(tp, (o, _))| (tp, o)).collect();
                (group, offsets)
            })
            .collect())
    }

    /// [`Self::committed_offsets_of_groups`], with each offset's commit metadata (the string a
    /// committer stores beside it; empty when none, and always for brokers older than v8).
    ///
    /// Without `require_stable`: offsets a transaction has sent but not committed yet are left
    /// out (the partition shows its last committed offset). With it, one such transaction, left
    /// open by a killed worker, would make every fetch of the group fail with
    /// UNSTABLE_OFFSET_COMMIT until the transaction is aborted, so an observer built on this
    /// could not see the very transaction it has to fence.
    pub async fn committed_of_groups(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<TopicPartition, (i64, String)>>, WireError> {
        Ok(self.committed_of_groups_inner(groups, true).await?.0)
    }

    /// [`Self::committed_of_groups`], with a group the coordinator would not answer for (an
    /// error code of its own, e.g. `NOT_COORDINATOR` while a broker still loads the group's
    /// offsets partition) set apart with its error instead of failing every group's answer.
    pub async fn committed_of_each_group(
        &self,
        groups: &[String],
    ) -> Result<(CommittedOfGroups, BTreeMap<String, WireError>), WireError> {
        self.committed_of_groups_inner(groups, false).await
    }

    /// Strict: any group's error fails the call (and a routing error is retried as a whole).
    async fn committed_of_groups_inner(
        &self,
        groups: &[String],
        strict: bool,
    ) -> Result<(CommittedOfGroups, BTreeMap<String, WireError>), WireError> {
        let api = "OffsetFetch";
        if groups.is_empty() {
            return Ok(Default::default());
        }
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, groups).await?;
            let mut out: CommittedOfGroups = BTreeMap::new();
            let mut failed: BTreeMap<String, WireError> = BTreeMap::new();
            for (coordinator, ids) in invert(&coordinators) {
                let (version, response) = self
                    .call(Target::Node(coordinator), None, true, &|version| {
                        let request = OffsetFetchRequest::default();
                        if version >= 8 {
                            request.with_groups(
                                ids.iter()
                                    .map(|g| {
                                        messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                                            .with_group_id(group_id(g))
                                            .with_topics(None)
                                    })
                                    .collect(),
                            )
                        } else {
                            request
                        }
                    })
                    .await?;
                if version < 8 {
                    for g in &ids {
                        match self.committed_offsets_of(g, false).await {
                            Ok(offsets) => {
                                let offsets = offsets
                                    .into_iter()
                                    .map(|(tp, o)| (tp, (o, String::new())))
                                    .collect();
                                out.insert(g.to_string(), offsets);
                            }
                            Err(error @ WireError::Broker { .. }) => {
                                failed.insert(g.to_string(), error);
                            }
                            Err(error) => return Err(error),
                        }
                    }
                    continue;
                }
                'groups: for g in response.groups {
                    let group = g.group_id.0.to_string();
                    if let Err(error) = check(api, &group, g.error_code, None) {
                        failed.insert(group, error);
                        continue;
                    }
                    let mut offsets = BTreeMap::new();
                    for topic in g.topics {
                        for p in topic.partitions {
                            let tp =
                                TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            if let Err(error) =
                                check(api, format!("{group}/{tp}"), p.error_code, None)
                            {
                                failed.insert(group, error);
                                continue 'groups;
                            }
                            if p.committed_offset >= 0 {
                                let metadata = p
                                    .metadata
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default();
                                offsets.insert(tp, (p.committed_offset, metadata));
                            }
                        }
                    }
                    out.insert(group, offsets);
                }
            }
            if strict && let Some((_, error)) = failed.pop_first() {
                return Err(error);
            }
            Ok((out, failed))
        })
        .await
    }

    /// Commits offsets for `group` as an admin would (generation -1, no member id): the
    /// coordinator only accepts this while the group has no members. Used to reset offsets.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WireError> {
        self.commit_offsets_marked(group, offsets, None).await
    }

    /// [`Self::commit_offsets`] with `metadata` as every partition's commit metadata (which
    /// OffsetFetch returns until the next commit replaces it).
    pub async fn commit_offsets_marked(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
        metadata: Option<&str>,
    ) -> Result<(), WireError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let api = "OffsetCommit";
        let keys_owned = [group.to_string()];
        let keys: &[String] = &keys_owned;
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, keys).await?;
            let coordinator = coordinator_of(&coordinators, group)?;
            let (_, response) = self
                .call(Target::Node(coordinator), None, true, &|_| {
                    let mut topics: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                    for (tp, offset) in offsets {
                        topics.entry(tp.topic.as_str()).or_default().push(
                            messages::offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(tp.partition)
                                .with_committed_offset(*offset)
                                .with_committed_metadata(metadata.map(|m| StrBytes::from_string(m.to_string()))),
                        );
                    }
                    OffsetCommitRequest::default()
                        .with_group_id(group_id(group))
                        .with_generation_id_or_member_epoch(-1)
                        .with_member_id(StrBytes::new())
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, partitions)| {
                                    messages::offset_commit_request::OffsetCommitRequestTopic::default()
                                        .with_name(topic_name(name))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        )
                })
                .await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check(api, format!("{group}/{tp}"), p.error_code, None)?;
                }
            }
            Ok(())
        })
        .await
    }

    // ----- transactions ------------------------------------------------------------------------

    /// Every transactional id known to any transaction coordinator, whatever its state.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>, WireError> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut out = BTreeMap::new();
        for broker in metadata.brokers {
            let resource = format!("broker {}", broker.id);
            let resource = &resource;
            let response = self
                .retrying("ListTransactions", || async move {
                    let (_, response) = self
                        .call(Target::Node(broker.id), None, true, &|_| {
                            ListTransactionsRequest::default()
                        })
                        .await?;
                    check("ListTransactions", resource, response.error_code, None)?;
                    Ok(response)
                })
                .await?;
            for t in response.transaction_states {
                let transactional_id = t.transactional_id.0.to_string();
                out.insert(
                    transactional_id.clone(),
                    TransactionListing {
                        transactional_id,
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Describes transactions, asking each transactional id's coordinator.
    pub async fn describe_transactions(
        &self,
        ids: &[String],
    ) -> Result<Vec<TransactionDescription>, WireError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let api = "DescribeTransactions";
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_TRANSACTION, ids).await?;
            let mut out = Vec::new();
            for (coordinator, transactional_ids) in invert(&coordinators) {
                let (_, response) = self
                    .call(Target::Node(coordinator), None, true, &|_| {
                        DescribeTransactionsRequest::default().with_transactional_ids(
                            transactional_ids
                                .iter()
                                .map(|id| TransactionalId(StrBytes::from_string(id.to_string())))
                                .collect(),
                        )
                    })
                    .await?;
                for t in response.transaction_states {
                    check(api, &t.transactional_id.0, t.error_code, None)?;
                    let mut partitions: Vec<TopicPartition> = t
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic
                                .partitions
                                .iter()
                                .map(|&p| TopicPartition::new(topic.topic.0.to_string(), p))
                        })
                        .collect();
                    partitions.sort();
                    out.push(TransactionDescription {
                        transactional_id: t.transactional_id.0.to_string(),
                        coordinator,
                        state: t.transaction_state.to_string(),
                        producer_id: t.producer_id.0,
                        producer_epoch: t.producer_epoch,
                        timeout_ms: t.transaction_timeout_ms,
                        start_time_ms: t.transaction_start_time_ms,
                        partitions,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Producers with state on each partition, asking each partition's leader.
    pub async fn describe_producers(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Vec<ProducerState>>, WireError> {
        self.retrying("DescribeProducers", || async move {
            self.describe_producers_once(partitions).await
        })
        .await
    }

    async fn describe_producers_once(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Vec<ProducerState>>, WireError> {
        let api = "DescribeProducers";
        let grouped = self.by_leader(api, partitions.iter()).await?;
        let mut out = BTreeMap::new();
        for (leader, partitions) in grouped {
            let (_, response) = self
                .call(Target::Node(leader), None, true, &|_| {
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for tp in &partitions {
                        topics
                            .entry(tp.topic.as_str())
                            .or_default()
                            .push(tp.partition);
                    }
                    DescribeProducersRequest::default().with_topics(
                        topics
                            .into_iter()
                            .map(|(name, indexes)| {
                                messages::describe_producers_request::TopicRequest::default()
                                    .with_name(topic_name(name))
                                    .with_partition_indexes(indexes)
                            })
                            .collect(),
                    )
                })
                .await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check(api, &tp, p.error_code, p.error_message.as_ref())?;
                    let producers = p
                        .active_producers
                        .iter()
                        .map(|s| {
                            Ok(ProducerState {
                                producer_id: s.producer_id.0,
                                producer_epoch: i16::try_from(s.producer_epoch).map_err(|_| {
                                    WireError::protocol(format!(
                                        "producer epoch {} out of range",
                                        s.producer_epoch
                                    ))
                                })?,
                                last_sequence: s.last_sequence,
                                last_timestamp: s.last_timestamp,
                                coordinator_epoch: s.coordinator_epoch,
                                current_txn_start_offset: s.current_txn_start_offset,
                            })
                        })
                        .collect::<Result<Vec<_>, WireError>>()?;
                    out.insert(tp, producers);
                }
            }
        }
        Ok(out)
    }

    /// Aborts a producer's open transaction on one partition by writing an abort marker there
    /// (`WriteTxnMarkers` to the partition leader), exactly what Kafka's `Admin.abortTransaction`
    /// and `kafka-transactions.sh abort` do. Take `producer_epoch` and `coordinator_epoch` from
    /// [`WireClient::describe_producers`]. Meant for hanging transactions the coordinator does
    /// not know about; aborting a live transaction this way breaks its producer.
    pub async fn abort_transaction(
        &self,
        partition: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), WireError> {
        let api = "WriteTxnMarkers";
        self.retrying(api, || async move {
            let grouped = self.by_leader(api, std::iter::once(partition)).await?;
            for leader in grouped.into_keys() {
                let (_, response) = self
                    .call(Target::Node(leader), None, true, &|_| {
                        WriteTxnMarkersRequest::default().with_markers(vec![
                            messages::write_txn_markers_request::WritableTxnMarker::default()
                                .with_producer_id(ProducerId(producer_id))
                                .with_producer_epoch(producer_epoch)
                                .with_transaction_result(false)
                                .with_coordinator_epoch(coordinator_epoch)
                                .with_topics(vec![
                                    messages::write_txn_markers_request::WritableTxnMarkerTopic::default()
                                        .with_name(topic_name(&partition.topic))
                                        .with_partition_indexes(vec![partition.partition]),
                                ]),
                        ])
                    })
                    .await?;
                for marker in response.markers {
                    for topic in marker.topics {
                        for p in topic.partitions {
                            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            check(api, &tp, p.error_code, None)?;
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }

    // ----- identities: SCRAM users and ACLs ----------------------------------------------------

    /// Gives `user` a SCRAM credential for `mechanism` with `password`, creating the user or
    /// replacing that mechanism's credential (`AlterUserScramCredentials`); the user's other
    /// mechanism is untouched. The password does not leave this process: the client draws a
    /// random 32-byte salt and sends the salted password (PBKDF2 with `iterations` rounds), as
    /// Kafka's own admin client does. Kafka accepts 4096 to 16384 iterations; another count is
    /// refused here, before hashing, with the error the controller would give
    /// (`UNACCEPTABLE_CREDENTIAL`). Any broker forwards the change to the controller.
    pub async fn upsert_scram_user(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<(), WireError> {
        use messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
        let api = "AlterUserScramCredentials";
        let resource = format!("{user} ({mechanism})");
        let credential = ScramCredential::generate(mechanism, password, iterations).map_err(
            |error| match error {
                ScramCredentialError::Iterations { .. } => WireError::Broker {
                    api,
                    resource: resource.clone(),
                    code: code::UNACCEPTABLE_CREDENTIAL,
                    name: error_name(code::UNACCEPTABLE_CREDENTIAL),
                    message: Some(format!("{error} (refused before sending)")),
                },
                ScramCredentialError::NoRandomness => WireError::protocol(error),
            },
        )?;
        let (credential, resource) = (&credential, &resource);
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                        ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_string(user.to_string()))
                            .with_mechanism(mechanism.code())
                            .with_iterations(credential.iterations)
                            .with_salt(Bytes::copy_from_slice(&credential.salt))
                            .with_salted_password(Bytes::copy_from_slice(
                                &credential.salted_password,
                            )),
                    ])
                })
                .await?;
            scram_alteration_result(api, resource, user, &response, &[])
        })
        .await
    }

    /// Removes `user`'s SCRAM credential for `mechanism` (`AlterUserScramCredentials`): new
    /// logins with it fail; connections already authenticated stay open. A credential already
    /// gone is not an error.
    pub async fn delete_scram_user(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<(), WireError> {
        use messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
        let api = "AlterUserScramCredentials";
        let resource = &format!("{user} ({mechanism})");
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        ScramCredentialDeletion::default()
                            .with_name(StrBytes::from_string(user.to_string()))
                            .with_mechanism(mechanism.code()),
                    ])
                })
                .await?;
            scram_alteration_result(api, resource, user, &response, &[code::RESOURCE_NOT_FOUND])
        })
        .await
    }

    /// The SCRAM mechanisms each of `users` has a credential for
    /// (`DescribeUserScramCredentials`); users without any are absent. Answered by the broker
    /// from its copy of the cluster metadata, which follows a change within moments.
    pub async fn scram_users(
        &self,
        users: &[String],
    ) -> Result<BTreeMap<String, Vec<ScramMechanism>>, WireError> {
        use messages::describe_user_scram_credentials_request::UserName;
        // Kafka refuses a user named twice (DUPLICATE_RESOURCE); no user at all means every user.
        let users: BTreeSet<&str> = users.iter().map(String::as_str).collect();
        if users.is_empty() {
            return Ok(BTreeMap::new());
        }
        let api = "DescribeUserScramCredentials";
        let users = &users;
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DescribeUserScramCredentialsRequest::default().with_users(Some(
                        users
                            .iter()
                            .map(|u| {
                                UserName::default().with_name(StrBytes::from_string(u.to_string()))
                            })
                            .collect(),
                    ))
                })
                .await?;
            check(
                api,
                "users",
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let mut out = BTreeMap::new();
            for result in response.results {
                if result.error_code == code::RESOURCE_NOT_FOUND {
                    continue;
                }
                check(
                    api,
                    &result.user,
                    result.error_code,
                    result.error_message.as_ref(),
                )?;
                let mut mechanisms = result
                    .credential_infos
                    .iter()
                    .map(|info| {
                        ScramMechanism::from_code(info.mechanism).ok_or_else(|| {
                            WireError::protocol(format!(
                                "user '{}' has a credential of unknown SCRAM mechanism {}",
                                result.user, info.mechanism
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                mechanisms.sort();
                mechanisms.dedup();
                if !mechanisms.is_empty() {
                    out.insert(result.user.to_string(), mechanisms);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Creates `bindings` (`CreateAcls`; one that exists already is left as is). Kafka creates
    /// each on its own: the answer has one result per binding, in their order, an error naming
    /// the binding it refused. The outer error is for the request as a whole. Any broker
    /// forwards the change to the controller; the brokers' authorizers apply it moments later.
    pub async fn create_acls(
        &self,
        bindings: &[AclBinding],
    ) -> Result<Vec<Result<(), WireError>>, WireError> {
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let api = "CreateAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    CreateAclsRequest::default().with_creations(
                        bindings
                            .iter()
                            .map(|b| {
                                messages::create_acls_request::AclCreation::default()
                                    .with_resource_type(b.resource_type.code())
                                    .with_resource_name(StrBytes::from_string(b.name.clone()))
                                    .with_resource_pattern_type(b.pattern.code())
                                    .with_principal(StrBytes::from_string(b.principal.clone()))
                                    .with_host(StrBytes::from_string(b.host.clone()))
                                    .with_operation(b.operation.code())
                                    .with_permission_type(b.permission.code())
                            })
                            .collect(),
                    )
                })
                .await?;
            if response.results.len() != bindings.len() {
                return Err(WireError::protocol(format!(
                    "{api} answered {} results for {} ACLs",
                    response.results.len(),
                    bindings.len()
                )));
            }
            Ok(bindings
                .iter()
                .zip(&response.results)
                .map(|(b, r)| check(api, b, r.error_code, r.error_message.as_ref()))
                .collect())
        })
        .await
    }

    /// Every ACL of `principal` (e.g. `User:alice`), whatever its resource, pattern, host,
    /// operation and permission, sorted (`DescribeAcls`). Answered by the broker's authorizer,
    /// so it shows what that broker enforces.
    pub async fn acls_of_principal(&self, principal: &str) -> Result<Vec<AclBinding>, WireError> {
        let api = "DescribeAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(acl::filter::ANY)
                        .with_resource_name_filter(None)
                        .with_pattern_type_filter(acl::filter::ANY)
                        .with_principal_filter(Some(StrBytes::from_string(principal.to_string())))
                        .with_host_filter(None)
                        .with_operation(acl::filter::ANY)
                        .with_permission_type(acl::filter::ANY)
                })
                .await?;
            check(
                api,
                principal,
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let mut out = Vec::new();
            for resource in &response.resources {
                for entry in &resource.acls {
                    out.push(
                        AclBinding::from_wire(
                            resource.resource_type,
                            &resource.resource_name,
                            resource.pattern_type,
                            &entry.principal,
                            &entry.host,
                            entry.operation,
                            entry.permission_type,
                        )
                        .map_err(WireError::Protocol)?,
                    );
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
    }

    /// Deletes `bindings`, each matched exactly (`DeleteAcls`); returns the ACLs deleted,
    /// sorted. A binding that matches nothing is not an error.
    pub async fn delete_acls(&self, bindings: &[AclBinding]) -> Result<Vec<AclBinding>, WireError> {
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let api = "DeleteAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DeleteAclsRequest::default().with_filters(
                        bindings
                            .iter()
                            .map(|b| {
                                messages::delete_acls_request::DeleteAclsFilter::default()
                                    .with_resource_type_filter(b.resource_type.code())
                                    .with_resource_name_filter(Some(StrBytes::from_string(
                                        b.name.clone(),
                                    )))
                                    .with_pattern_type_filter(b.pattern.code())
                                    .with_principal_filter(Some(StrBytes::from_string(
                                        b.principal.clone(),
                                    )))
                                    .with_host_filter(Some(StrBytes::from_string(b.host.clone())))
                                    .with_operation(b.operation.code())
                                    .with_permission_type(b.permission.code())
                            })
                            .collect(),
                    )
                })
                .await?;
            if response.filter_results.len() != bindings.len() {
                return Err(WireError::protocol(format!(
                    "{api} answered {} results for {} filters",
                    response.filter_results.len(),
                    bindings.len()
                )));
            }
            let mut deleted = Vec::new();
            for (b, result) in bindings.iter().zip(&response.filter_results) {
                check(api, b, result.error_code, result.error_message.as_ref())?;
                for m in &result.matching_acls {
                    check(api, b, m.error_code, m.error_message.as_ref())?;
                    deleted.push(
                        AclBinding::from_wire(
                            m.resource_type,
                            &m.resource_name,
                            m.pattern_type,
                            &m.principal,
                            &m.host,
                            m.operation,
                            m.permission_type,
                        )
                        .map_err(WireError::Protocol)?,
                    );
                }
            }
            deleted.sort();
            deleted.dedup();
            Ok(deleted)
        })
        .await
    }

    // ----- test and demo helpers ---------------------------------------------------------------

    /// Fences `transactional_id`: `InitProducerId` for it, as a new instance of its producer
    /// would, so its coordinator bumps the epoch and aborts the transaction it had open; a
    /// process still using the id (a zombie) is fenced. Retries while the coordinator completes
    /// a previous transaction (`CONCURRENT_TRANSACTIONS`). Returns the new producer id and epoch.
    pub async fn fence_transactional_id(
        &self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16), WireError> {
        let api = "InitProducerId";
        let keys = [transactional_id.to_string()];
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = self
                .retrying(api, || {
                    let keys = &keys;
                    async move {
                        let coordinators = self
                            .find_coordinators(COORDINATOR_TRANSACTION, keys)
                            .await?;
                        let coordinator =
                            coordinators.get(transactional_id).copied().ok_or_else(|| {
                                WireError::protocol(format!(
                                    "no transaction coordinator for {transactional_id}"
                                ))
                            })?;
                        let (_, init) = self
                            .call(Target::Node(coordinator), None, true, &|_| {
                                InitProducerIdRequest::default()
                                    .with_transactional_id(Some(TransactionalId(
                                        StrBytes::from_string(transactional_id.to_string()),
                                    )))
                                    .with_transaction_timeout_ms(transaction_timeout_ms)
                            })
                            .await?;
                        check(api, transactional_id, init.error_code, None)?;
                        Ok((init.producer_id.0, init.producer_epoch))
                    }
                })
                .await;
            match attempt {
                Err(e)
                    if e.code() == Some(code::CONCURRENT_TRANSACTIONS)
                        && Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }

    /// FOR TESTS AND DEMOS ONLY: leaves a hanging transaction on `partition`. Gets an idempotent
    /// producer id (`InitProducerId` without a transactional id) and appends `records` records
    /// as one transactional batch that no transaction coordinator knows about, so nothing will
    /// ever commit or abort it: the partition's last stable offset stays at the batch until
    /// [`WireClient::abort_transaction`] clears it. Returns the producer id and epoch.
    ///
    /// Brokers verify transactional appends against the coordinator unless
    /// `transaction.partition.verification.enable` is `false`; with verification on, the append
    /// fails with `INVALID_TXN_STATE` or similar.
    pub async fn write_untracked_transactional_batch(
        &self,
        partition: &TopicPartition,
        records: usize,
    ) -> Result<(i64, i16), WireError> {
        // A broker that just started answers COORDINATOR_LOAD_IN_PROGRESS for a moment.
        let init = self
            .retrying("InitProducerId", || async move {
                let (_, init) = self
                    .call(Target::Any, None, false, &|_| {
                        InitProducerIdRequest::default()
                            .with_transactional_id(None)
                            .with_transaction_timeout_ms(i32::MAX)
                    })
                    .await?;
                check(
                    "InitProducerId",
                    "idempotent producer",
                    init.error_code,
                    None,
                )?;
                Ok(init)
            })
            .await?;
        let (producer_id, producer_epoch) = (init.producer_id.0, init.producer_epoch);
        let batch = encode_batch(producer_id, producer_epoch, true, records)?;
        // Kafka refuses transactional batches in a Produce request without a transactional id;
        // this one is unknown to the coordinators.
        let transactional_id = format!("exactly-untracked-{producer_id}");
        // Produce v12+ makes the broker add the partition to the transaction itself (transaction
        // version 2), which needs a coordinator that knows the producer; v11 only verifies, and
        // only when `transaction.partition.verification.enable` is on.
        self.produce(
            partition,
            Some(&transactional_id),
            batch,
            Some(UNTRACKED_PRODUCE_VERSION),
        )
        .await?;
        Ok((producer_id, producer_epoch))
    }

    /// Appends an encoded record batch to `partition` with `acks=all`; returns its base offset.
    async fn produce(
        &self,
        partition: &TopicPartition,
        transactional_id: Option<&str>,
        batch: Bytes,
        max_version: Option<i16>,
    ) -> Result<i64, WireError> {
        let api = "Produce";
        let timeout_ms = duration_ms(self.request_timeout);
        let batch = &batch;
        self.retrying(api, || async move {
            let metadata = self
                .fetch_metadata(Some(std::slice::from_ref(&partition.topic)))
                .await?;
            let topic = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| *n.0 == *partition.topic));
            let leader = topic
                .and_then(|t| {
                    t.partitions
                        .iter()
                        .find(|p| p.partition_index == partition.partition)
                })
                .map(|p| p.leader_id.0);
            let leader = match leader {
                None => {
                    return Err(broker_error(
                        api,
                        partition,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                    ));
                }
                Some(leader) if leader < 0 => {
                    return Err(broker_error(api, partition, code::LEADER_NOT_AVAILABLE));
                }
                Some(leader) => leader,
            };
            let topic_id = topic.map(|t| t.topic_id).unwrap_or_default();
            let (_, response) = self
                .call(Target::Node(leader), max_version, false, &|_| {
                    // The name is sent up to v12, the topic id from v13.
                    ProduceRequest::default()
                        .with_transactional_id(
                            transactional_id
                                .map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
                        )
                        .with_acks(-1)
                        .with_timeout_ms(timeout_ms)
                        .with_topic_data(vec![
                            messages::produce_request::TopicProduceData::default()
                                .with_name(topic_name(&partition.topic))
                                .with_topic_id(topic_id)
                                .with_partition_data(vec![
                                    messages::produce_request::PartitionProduceData::default()
                                        .with_index(partition.partition)
                                        .with_records(Some(batch.clone())),
                                ]),
                        ])
                })
                .await?;
            let mut base_offset = None;
            for topic in response.responses {
                for p in topic.partition_responses {
                    check(api, partition, p.error_code, p.error_message.as_ref())?;
                    base_offset = Some(p.base_offset);
                }
            }
            base_offset.ok_or_else(|| WireError::protocol("Produce response without the partition"))
        })
        .await
    }
}

/// The outcome for `user` in an `AlterUserScramCredentials` answer; error codes in `tolerated`
/// count as success.
fn scram_alteration_result(
    api: &'static str,
    resource: &str,
    user: &str,
    response: &messages::AlterUserScramCredentialsResponse,
    tolerated: &[i16],
) -> Result<(), WireError> {
    let result = response
        .results
        .iter()
        .find(|r| r.user.as_str() == user)
        .ok_or_else(|| WireError::protocol(format!("{api} returned no result for '{user}'")))?;
    if tolerated.contains(&result.error_code) {
        return Ok(());
    }
    check(
        api,
        resource,
        result.error_code,
        result.error_message.as_ref(),
    )
}

/// A [`WireError::Broker`] for `code` without a message.
fn broker_error(api: &'static str, resource: impl fmt::Display, code: i16) -> WireError {
    WireError::Broker {
        api,
        resource: resource.to_string(),
        code,
        name: error_name(code),
        message: None,
    }
}

/// One record batch of `records` records from a producer, sequence numbers from 0.
fn encode_batch(
    producer_id: i64,
    producer_epoch: i16,
    transactional: bool,
    records: usize,
) -> Result<Bytes, WireError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let records = (0..records)
        .map(|i| {
            let index = i32::try_from(i)
                .map_err(|_| WireError::protocol(format!("{records} records in one batch")))?;
            Ok(Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(index),
                sequence: index,
                timestamp: now,
                key: None,
                value: Some(Bytes::from(format!("exactly-wire-{index}"))),
                headers: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| WireError::Protocol(format!("encoding record batch: {e:#}")))?;
    Ok(buf.freeze())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn duration_ms(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Keys per coordinator node.
fn invert(coordinators: &BTreeMap<String, i32>) -> BTreeMap<i32, Vec<&str>> {
    let mut out: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for (key, node) in coordinators {
        out.entry(*node).or_default().push(key);
    }
    out
}

fn coordinator_of(coordinators: &BTreeMap<String, i32>, key: &str) -> Result<i32, WireError> {
    coordinators
        .get(key)
        .copied()
        .ok_or_else(|| WireError::Protocol(format!("FindCoordinator did not answer for '{key}'")))
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's text form of a UUID: URL-safe base64 without padding.
fn kafka_uuid_string(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Kafka's name for an error code (`org.apache.kafka.common.protocol.Errors`).
pub fn error_name(code: i16) -> &'static str {
    match code {
        0 => "NONE",
        -1 => "UNKNOWN_SERVER_ERROR",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        4 => "INVALID_FETCH_SIZE",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        11 => "STALE_CONTROLLER_EPOCH",
        12 => "OFFSET_METADATA_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        22 => "ILLEGAL_GENERATION",
        23 => "INCONSISTENT_GROUP_PROTOCOL",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        26 => "INVALID_SESSION_TIMEOUT",
        27 => "REBALANCE_IN_PROGRESS",
        28 => "INVALID_COMMIT_OFFSET_SIZE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        32 => "INVALID_TIMESTAMP",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        39 => "INVALID_REPLICA_ASSIGNMENT",
        40 => "INVALID_CONFIG",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        43 => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        44 => "POLICY_VIOLATION",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        47 => "INVALID_PRODUCER_EPOCH",
        48 => "INVALID_TXN_STATE",
        49 => "INVALID_PRODUCER_ID_MAPPING",
        50 => "INVALID_TRANSACTION_TIMEOUT",
        51 => "CONCURRENT_TRANSACTIONS",
        52 => "TRANSACTION_COORDINATOR_FENCED",
        53 => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        54 => "SECURITY_DISABLED",
        55 => "OPERATION_NOT_ATTEMPTED",
        56 => "KAFKA_STORAGE_ERROR",
        57 => "LOG_DIR_NOT_FOUND",
        58 => "SASL_AUTHENTICATION_FAILED",
        59 => "UNKNOWN_PRODUCER_ID",
        60 => "REASSIGNMENT_IN_PROGRESS",
        61 => "DELEGATION_TOKEN_AUTH_DISABLED",
        62 => "DELEGATION_TOKEN_NOT_FOUND",
        63 => "DELEGATION_TOKEN_OWNER_MISMATCH",
        64 => "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        65 => "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        66 => "DELEGATION_TOKEN_EXPIRED",
        67 => "INVALID_PRINCIPAL_TYPE",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        70 => "FETCH_SESSION_ID_NOT_FOUND",
        71 => "INVALID_FETCH_SESSION_EPOCH",
        72 => "LISTENER_NOT_FOUND",
        73 => "TOPIC_DELETION_DISABLED",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        76 => "UNSUPPORTED_COMPRESSION_TYPE",
        77 => "STALE_BROKER_EPOCH",
        78 => "OFFSET_NOT_AVAILABLE",
        79 => "MEMBER_ID_REQUIRED",
        80 => "PREFERRED_LEADER_NOT_AVAILABLE",
        81 => "GROUP_MAX_SIZE_REACHED",
        82 => "FENCED_INSTANCE_ID",
        83 => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        84 => "ELECTION_NOT_NEEDED",
        85 => "NO_REASSIGNMENT_IN_PROGRESS",
        86 => "GROUP_SUBSCRIBED_TO_TOPIC",
        87 => "INVALID_RECORD",
        88 => "UNSTABLE_OFFSET_COMMIT",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        90 => "PRODUCER_FENCED",
        91 => "RESOURCE_NOT_FOUND",
        92 => "DUPLICATE_RESOURCE",
        93 => "UNACCEPTABLE_CREDENTIAL",
        94 => "INCONSISTENT_VOTER_SET",
        95 => "INVALID_UPDATE_VERSION",
        96 => "FEATURE_UPDATE_FAILED",
        97 => "PRINCIPAL_DESERIALIZATION_FAILURE",
        98 => "SNAPSHOT_NOT_FOUND",
        99 => "POSITION_OUT_OF_RANGE",
        100 => "UNKNOWN_TOPIC_ID",
        101 => "DUPLICATE_BROKER_REGISTRATION",
        102 => "BROKER_ID_NOT_REGISTERED",
        103 => "INCONSISTENT_TOPIC_ID",
        104 => "INCONSISTENT_CLUSTER_ID",
        105 => "TRANSACTIONAL_ID_NOT_FOUND",
        106 => "FETCH_SESSION_TOPIC_ID_ERROR",
        107 => "INELIGIBLE_REPLICA",
        108 => "NEW_LEADER_ELECTED",
        109 => "OFFSET_MOVED_TO_TIERED_STORAGE",
        110 => "FENCED_MEMBER_EPOCH",
        111 => "UNRELEASED_INSTANCE_ID",
        112 => "UNSUPPORTED_ASSIGNOR",
        113 => "STALE_MEMBER_EPOCH",
        114 => "MISMATCHED_ENDPOINT_TYPE",
        115 => "UNSUPPORTED_ENDPOINT_TYPE",
        116 => "UNKNOWN_CONTROLLER_ID",
        117 => "UNKNOWN_SUBSCRIPTION_ID",
        118 => "TELEMETRY_TOO_LARGE",
        119 => "INVALID_REGISTRATION",
        120 => "TRANSACTION_ABORTABLE",
        121 => "INVALID_RECORD_STATE",
        122 => "SHARE_SESSION_NOT_FOUND",
        123 => "INVALID_SHARE_SESSION_EPOCH",
        124 => "FENCED_STATE_EPOCH",
        125 => "INVALID_VOTER_KEY",
        126 => "DUPLICATE_VOTER",
        127 => "VOTER_NOT_FOUND",
        128 => "INVALID_REGULAR_EXPRESSION",
        129 => "REBOOTSTRAP_REQUIRED",
        130 => "STREAMS_INVALID_TOPOLOGY",
        131 => "STREAMS_INVALID_TOPOLOGY_EPOCH",
        132 => "STREAMS_TOPOLOGY_FENCED",
        133 => "SHARE_SESSION_LIMIT_REACHED",
        _ => "UNKNOWN",
    }
}

/// The topics of a classic `consumer` group member's assignment (empty when it cannot be read).
fn assigned_topics(protocol_type: &str, assignment: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    if protocol_type != "consumer" || assignment.len() < 2 {
        return Vec::new();
    }
    let mut buf = assignment.clone();
    let version = buf.get_i16();
    let version = version.clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => {
            let mut topics: Vec<String> = a
                .assigned_partitions
                .iter()
                .map(|t| t.topic.0.to_string())
                .collect();
            topics.sort();
            topics.dedup();
            topics
        }
        Err(_) => Vec::new(),
    }
}

/// Committed offsets (with their commit metadata) of each group, by partition.
pub type CommittedOfGroups = BTreeMap<String, BTreeMap<TopicPartition, (i64, String)>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trips() {
        let bytes: [u8; 16] = [
            0x0f, 0xa3, 0x51, 0x02, 0x99, 0x10, 0x4b, 0x7e, 0x80, 0x01, 0xff, 0x00, 0x12, 0x34,
            0x56, 0x78,
        ];
        let text = kafka_uuid_string(&bytes);
        assert_eq!(text.len(), 22);
        assert_eq!(text, "D6NRApkQS36AAf8AEjRWeA");
        assert_eq!(kafka_uuid_string(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn topic_partition_displays_like_kafka() {
        assert_eq!(TopicPartition::new("orders", 3).to_string(), "orders-3");
    }

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(16), "NOT_COORDINATOR");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
    }
}
