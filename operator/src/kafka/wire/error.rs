//! [`WireError`], the Kafka error codes this client uses by name, and Kafka's name of every code.

use std::fmt;

use kafka_protocol::protocol::StrBytes;

/// Kafka error codes used by name in this module.
pub(super) mod code {
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
    pub(super) fn is_routing(&self) -> bool {
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

    pub(super) fn protocol(what: impl fmt::Display) -> Self {
        WireError::Protocol(what.to_string())
    }
}

/// `Ok(())` for error code 0, else a [`WireError::Broker`].
pub(super) fn check(
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

/// A [`WireError::Broker`] for `code` without a message.
#[cfg(feature = "test-support")]
pub(super) fn broker_error(api: &'static str, resource: impl fmt::Display, code: i16) -> WireError {
    WireError::Broker {
        api,
        resource: resource.to_string(),
        code,
        name: error_name(code),
        message: None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(16), "NOT_COORDINATOR");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
    }
}
