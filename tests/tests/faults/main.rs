//! Fault tests: a test binary of its own, so that the environment they break (a broker restart)
//! is theirs alone. Run with `make test`, or `cargo test -p exactly-testenv --test faults`
//! after `cargo build -p exactly-worker -p exactly --bins`.

mod apiserver;
mod common;
mod deletion;
mod errors;
mod failover;
mod guarantee;
mod killed;
mod outage;
mod pipeline;
mod pods;
mod scale;
mod secure;
#[path = "../integration/support.rs"]
#[allow(dead_code)]
mod support;
mod topics;
