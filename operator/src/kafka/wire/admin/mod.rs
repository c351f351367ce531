//! The admin calls, one file per subject; each adds its methods to
//! [`WireClient`](super::WireClient).

mod acls;
mod cluster;
mod groups;
mod offsets;
mod scram;
mod transactions;
