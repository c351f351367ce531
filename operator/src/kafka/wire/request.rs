//! What can be sent: [`WireRequest`] ties each `kafka-protocol` request type to its response,
//! [`WireClient::send`] sends any of them as is, and small helpers build request fields.

use std::time::Duration;

use kafka_protocol::messages::{self, ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};

use super::route::Target;
use super::{WireClient, WireError};

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

impl WireClient {
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
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(super) fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

pub(super) fn duration_ms(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
