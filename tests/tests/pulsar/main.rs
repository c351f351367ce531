//! Tests on a real Apache Pulsar standalone (`exactly_testenv::pulsar`): a test binary of its
//! own, so that only it pays Pulsar's start-up (one standalone, shared by its tests; each test
//! in a tenant of its own). Run with `make pulsar` (also the last step of `make test`), or
//! `cargo test -p exactly-testenv --test pulsar`.

mod dedup;
mod resources;
mod standalone;
mod subscription;
mod topic;
mod transactions;

use std::time::{Duration, Instant};

use exactly_testenv::pulsar::{AdminResponse, Pulsar};

/// `GET path`, which must answer `want`.
pub fn get(pulsar: &Pulsar, path: &str, want: u16) -> AdminResponse {
    request(pulsar, "GET", path, None, want)
}

/// One admin request, which must answer `want`.
pub fn request(
    pulsar: &Pulsar,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> AdminResponse {
    let response = pulsar
        .admin(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(response.status, want, "{method} {path}: {response}");
    response
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with the last state.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if started.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last state: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
