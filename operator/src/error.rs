use thiserror::Error;

/// Everything a reconcile can fail with. Each variant has a stable label ([`Error::reason`])
/// used as the condition reason, the metric label and the event reason.
#[derive(Error, Debug)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("Kafka request failed: {0}")]
    Kafka(#[from] crate::kafka::KafkaError),

    #[error("the resource has no {0}; the API server should always set it")]
    MissingObjectKey(&'static str),

    #[error("could not render {0}: {1}")]
    Render(&'static str, String),
}

impl Error {
    /// Stable CamelCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Kafka(e) => e.reason(),
            Error::MissingObjectKey(_) => "InvalidObject",
            Error::Render(..) => "RenderFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
