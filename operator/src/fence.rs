//! Whether this replica may change anything: in the Kubernetes API (status, Secrets, children,
//! Events, finalizers) or in Kafka (topics, offsets, transactions).
//!
//! Without leader election the fence is open. With it, it holds only while the lease is surely
//! still this replica's: renewed less than `duration - renew` ago by this process's monotonic
//! clock. A replica frozen past its lease (SIGSTOP, a paused VM, a long GC-like stall) therefore
//! changes nothing when it wakes, even in the moments before it notices that another replica took
//! the lease over — the window in which two leaders would otherwise both write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// See the module documentation. Cheap to clone; clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Held>>);

#[derive(Debug)]
struct Held {
    /// The clock's origin for `until`.
    origin: Instant,
    /// Until when the lease is surely ours, in nanoseconds after `origin`; 0: not ours.
    until: AtomicU64,
}

/// Why a change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "this replica may no longer hold the leader lease (not renewed in time): it changes nothing and stops"
)]
pub struct NotLeader;

impl Fence {
    /// No leader election: every change may go ahead.
    pub fn open() -> Fence {
        Fence(None)
    }

    /// A leader's fence, closed until [`Fence::renewed`] is first called.
    pub fn leased() -> Fence {
        Fence(Some(Arc::new(Held {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        })))
    }

    /// Records a renewal that succeeded: its request was sent at `sent` (the lease counts from
    /// there, as the API server's copy of it does) and the lease is surely ours for `valid_for`
    /// from then. An answer to an older request never shortens what a newer one gave.
    pub fn renewed(&self, sent: Instant, valid_for: Duration) {
        if let Some(held) = &self.0 {
            let until = (sent + valid_for).saturating_duration_since(held.origin);
            let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
            held.until.fetch_max(nanos, Ordering::AcqRel);
        }
    }

    /// Closes the fence (the lease was lost or given up) until a later renewal.
    pub fn close(&self) {
        if let Some(held) = &self.0 {
            held.until.store(0, Ordering::Release);
        }
    }

    /// Whether a change may go ahead now.
    pub fn check(&self) -> Result<(), NotLeader> {
        let Some(held) = &self.0 else {
            return Ok(());
        };
        let until = held.until.load(Ordering::Acquire);
        if until != 0 && Instant::now() < held.origin + Duration::from_nanos(until) {
            Ok(())
        } else {
            Err(NotLeader)
        }
    }

    /// [`Fence::check`] as a boolean.
    pub fn holds(&self) -> bool {
        self.check().is_ok()
    }
}

/// Logs, at debug level on the target `exactly::writes` (`RUST_LOG=info,exactly::writes=debug`),
/// a change that passed the fence: the leader-failover test reads these lines to show that a
/// stale leader sent nothing once it woke.
pub fn passed(system: &str, change: std::fmt::Arguments<'_>) {
    tracing::debug!(target: "exactly::writes", system, "change passed the fence: {change}");
}

/// Whether an HTTP request to the API server changes something (anything but a read or watch).
pub fn is_change(method: &::http::Method) -> bool {
    !matches!(
        *method,
        ::http::Method::GET | ::http::Method::HEAD | ::http::Method::OPTIONS
    )
}

/// A layer for kube's client stack (`ClientBuilder::with_layer`) that refuses every change to
/// the API server while `fence` does not hold; reads and watches go ahead.
pub fn client_layer<B>(
    fence: Fence,
) -> tower::filter::FilterLayer<
    impl Fn(::http::Request<B>) -> Result<::http::Request<B>, NotLeader> + Clone,
> {
    tower::filter::FilterLayer::new(move |request: ::http::Request<B>| {
        if is_change(request.method()) {
            fence.check()?;
            passed(
                "API",
                format_args!("{} {}", request.method(), request.uri().path()),
            );
        }
        Ok(request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_leased_fence_holds_from_a_renewal_until_its_validity_passes() {
        let fence = Fence::leased();
        assert!(!fence.holds(), "closed before the first renewal");
        fence.renewed(Instant::now(), TEN);
        assert!(fence.holds());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(fence.holds());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(fence.check(), Err(NotLeader));
        fence.renewed(Instant::now(), TEN);
        assert!(fence.holds(), "open again after a renewal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_counts_from_when_it_was_sent_and_an_older_one_changes_nothing() {
        let fence = Fence::leased();
        let sent = Instant::now();
        tokio::time::advance(Duration::from_secs(8)).await;
        fence.renewed(sent, TEN); // its answer took 8 s
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!fence.holds());
        fence.renewed(Instant::now(), TEN);
        fence.renewed(sent, TEN); // a late answer to an older request
        assert!(fence.holds());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_fence_stays_closed_and_an_open_one_always_holds() {
        let fence = Fence::leased();
        fence.renewed(Instant::now(), TEN);
        fence.close();
        assert!(!fence.holds());
        let open = Fence::open();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(open.holds());
    }

    #[test]
    fn only_reads_and_watches_are_not_changes() {
        assert!(!is_change(&::http::Method::GET));
        for method in [
            ::http::Method::POST,
            ::http::Method::PUT,
            ::http::Method::PATCH,
            ::http::Method::DELETE,
        ] {
            assert!(is_change(&method), "{method}");
        }
    }
}
