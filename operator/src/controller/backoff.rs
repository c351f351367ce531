//! How long a watch waits before it lists or watches again after a failure. kube's default
//! (client-go's) doubles from 0.8 s to 30 s: after an API server outage of a few seconds the
//! watches come back up to half a minute late, and every change made meanwhile waits with them.
//! These delays double from 0.5 s to 4 s: one request per watch every 4 s while the API server is
//! away is no storm, and the operator resumes within seconds of its return (issue #11).

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first delay after a failure.
const FIRST: Duration = Duration::from_millis(500);
/// The longest delay.
const MAX: Duration = Duration::from_secs(4);

/// The watches' retry delays: [`FIRST`] doubling to [`MAX`], back to [`FIRST`] once a watch
/// delivers again.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_four_seconds_and_start_again_after_a_reset() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<u64> = backoff
            .by_ref()
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(500)));
    }
}
