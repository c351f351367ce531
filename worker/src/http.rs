//! The worker's HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (200 while the process
//! runs) and `/readyz` (200 once the consumer has joined the group, 503 before that and while
//! the `Stop` error policy holds the pipeline, with the reason in the body). Three fixed routes
//! do not justify a web framework: one request line per connection, `Connection: close`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use crate::decide::StopReason;
use crate::metrics::Metrics;

/// What `/readyz` reports; the transaction loop updates it.
#[derive(Debug, Default)]
pub struct Health {
    joined: AtomicBool,
    stopped: Mutex<Option<StopReason>>,
}

impl Health {
    /// The consumer joined the group (it had an assignment, possibly empty).
    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// The `Stop` policy stopped the pipeline at a record.
    pub fn set_stopped(&self, reason: StopReason) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Where the pipeline stopped, if it did.
    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `/readyz` status line and body.
    pub fn readiness(&self) -> (&'static str, String) {
        if let Some(reason) = self.stopped() {
            return ("503 Service Unavailable", format!("stopped at {reason}\n"));
        }
        if self.joined.load(Ordering::Relaxed) {
            ("200 OK", "ok\n".to_string())
        } else {
            (
                "503 Service Unavailable",
                "not yet joined the consumer group\n".to_string(),
            )
        }
    }
}

/// Serves until the process ends. Returns the bound address (port 0 picks a free one).
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    info!(%address, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (metrics, health) = (metrics.clone(), health.clone());
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &metrics, &health).await {
                            debug!(error = %e, "http connection failed");
                        }
                    });
                }
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
    });
    Ok(address)
}

async fn answer(stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    // Drain the headers so the client sees a clean close.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET", "/healthz") => ("200 OK", text, "ok\n".to_string()),
        ("GET", "/readyz") => {
            let (status, body) = health.readiness();
            (status, text, body)
        }
        ("GET", _) => ("404 Not Found", text, "not found\n".to_string()),
        _ => ("405 Method Not Allowed", text, "only GET\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_joining_and_not_while_stopped() {
        let health = Health::default();
        assert_eq!(health.readiness().0, "503 Service Unavailable");
        health.set_joined();
        assert_eq!(health.readiness(), ("200 OK", "ok\n".to_string()));
        health.set_stopped(StopReason {
            topic: "orders".into(),
            partition: 1,
            offset: 9,
            message: "the value is not JSON".into(),
        });
        assert_eq!(
            health.readiness(),
            (
                "503 Service Unavailable",
                "stopped at orders-1@9: the value is not JSON\n".to_string()
            )
        );
    }
}
