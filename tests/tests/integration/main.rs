//! Integration tests on the real environment (one per test binary, shared; each test in its own
//! namespace). Run with `make test`, or one test with
//! `cargo test -p exactly-testenv --test integration -- topic::grows`.

mod access;
mod acl;
mod chart;
mod cluster;
mod environment;
mod examples;
mod fuzz;
mod gitops;
mod group;
mod lease;
mod node;
mod pipeline;
mod producer;
mod provisioned;
mod quiet;
mod scale;
mod support;
mod topic;
mod wire;
