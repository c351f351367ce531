//! What a call to Pulsar's admin API can fail with.

/// A failed admin call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PulsarError {
    /// Nothing answered (connection refused, DNS, timeout).
    #[error("cannot reach Pulsar's admin API at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The broker answered and refused: `status` is the HTTP status, `reason` Pulsar's own words.
    #[error("Pulsar refused to {operation} '{resource}': HTTP {status}{}", reason_suffix(.reason))]
    Refused {
        operation: &'static str,
        resource: String,
        status: u16,
        reason: String,
    },
    /// An answer that could not be understood.
    #[error("Pulsar admin API answer not understood: {0}")]
    Protocol(String),
    /// A call that did not complete, or whose effect is not visible yet.
    #[error("Pulsar call did not complete: {0}")]
    Interrupted(String),
    /// The PulsarCluster's connection settings (URL, Secret) cannot be used.
    #[error("invalid Pulsar connection settings: {0}")]
    ClientConfig(String),
    /// A change refused before it was sent: this replica may no longer hold the leader lease.
    #[error(transparent)]
    NotLeader(#[from] crate::fence::NotLeader),
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl PulsarError {
    /// Stable CamelCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PulsarError::Unreachable { .. } => "PulsarUnreachable",
            PulsarError::Refused { .. } => "PulsarRefused",
            PulsarError::Protocol(_) => "PulsarProtocolError",
            PulsarError::Interrupted(_) => "PulsarCallInterrupted",
            PulsarError::ClientConfig(_) => "PulsarClientConfigInvalid",
            PulsarError::NotLeader(_) => "NotLeader",
        }
    }

    /// Whether the broker refused the request (as opposed to not answering): retrying the same
    /// request will not help until something changes.
    pub fn is_refused(&self) -> bool {
        matches!(self, PulsarError::Refused { status, .. } if *status < 500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_operation_the_resource_the_status_and_pulsars_reason() {
        let e = PulsarError::Refused {
            operation: "create the partitioned topic",
            resource: "persistent://t/ns/orders".into(),
            status: 409,
            reason: "This topic already exists".into(),
        };
        assert_eq!(
            e.to_string(),
            "Pulsar refused to create the partitioned topic 'persistent://t/ns/orders': HTTP 409 (This topic already exists)"
        );
        assert_eq!(e.reason(), "PulsarRefused");
        assert!(e.is_refused());
    }

    #[test]
    fn a_server_error_is_worth_retrying() {
        let e = PulsarError::Refused {
            operation: "read the topic's partitions",
            resource: "t/ns/orders".into(),
            status: 503,
            reason: String::new(),
        };
        assert!(!e.is_refused());
        assert!(e.to_string().ends_with("HTTP 503"));
    }
}
