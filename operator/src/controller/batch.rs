//! Coalescing of admin calls across resources (DESIGN §6, issue #10): many Topics created in
//! one burst become one `CreateTopics` request (and one `Metadata`, one `DescribeConfigs`)
//! instead of one each. A caller hands in its key and awaits its own result; the first key of an
//! empty batch starts a short linger, after which (or as soon as the batch is full) the whole
//! batch goes out in one call and each caller gets the answer for its key. Strimzi's topic
//! operator batches the same way (a queue drained with a linger of 100 ms).
//!
//! One call of a batcher is out at a time: keys that come while it is out go together in the
//! next, so batches grow with the broker's latency under load, and a lone key still goes after
//! the linger. It matters to the broker: in a burst of 10 000 Topics, created about six to a
//! request, Kafka used ~72 CPU-s against ~44 for the same topics 500 to a request, and its
//! profile (JFR, during `make bench-scale`) showed much of it re-reading its offset checkpoint
//! files (a line per partition it has) as each new set of partitions was created.
//!
//! So the linger adapts ([`Linger`]): a key that comes while a burst is on (the last call, moments
//! ago, carried more than one key) waits longer for company than one that comes to an idle
//! batcher, so a burst is sent in fewer, larger requests while a lone change, or changes made
//! one after the other, still go out after the short linger.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::oneshot;

/// The batched call: the keys of a batch in, one result per key out, in the same order.
pub type BatchCall<K, V> =
    Arc<dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Vec<V>> + Send>> + Send + Sync>;

/// How long the first key of a batch waits for others.
#[derive(Clone, Copy, Debug)]
pub struct Linger {
    /// When the batcher has been idle for at least `busy_for`.
    pub idle: Duration,
    /// When a call of this batcher carrying more than one key ended less than `busy_for` ago:
    /// a burst is on.
    pub busy: Duration,
    pub busy_for: Duration,
}

impl Linger {
    /// The same wait, busy or not.
    pub fn fixed(linger: Duration) -> Self {
        Linger {
            idle: linger,
            busy: linger,
            busy_for: Duration::ZERO,
        }
    }
}

/// Collects keys from concurrent callers and answers them with one call per batch.
pub struct Batcher<K, V> {
    linger: Linger,
    max: usize,
    pending: Mutex<Vec<(K, oneshot::Sender<V>)>>,
    /// When the last call came back, and how many keys it carried.
    last_call: Mutex<Option<(Instant, usize)>>,
    /// Held while a call is out.
    turn: tokio::sync::Mutex<()>,
    call: BatchCall<K, V>,
}

impl<K: Send + 'static, V: Send + 'static> Batcher<K, V> {
    /// A batcher that waits `linger` after the first key of a batch, sends at most `max` keys
    /// in one call, and makes its calls with `call`.
    pub fn new(linger: Linger, max: usize, call: BatchCall<K, V>) -> Arc<Self> {
        Arc::new(Batcher {
            linger,
            max: max.max(1),
            pending: Mutex::new(Vec::new()),
            last_call: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
            call,
        })
    }

    /// The result for `key`, from the batch it joins. `None` only when the batched call was
    /// lost (its task panicked or the runtime is shutting down).
    pub async fn call(self: &Arc<Self>, key: K) -> Option<V> {
        let (tx, rx) = oneshot::channel();
        let (first, full) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push((key, tx));
            (pending.len() == 1, pending.len() >= self.max)
        };
        if full {
            tokio::spawn(self.clone().flush());
        } else if first {
            let linger = self.linger_now();
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(linger).await;
                this.flush().await;
            });
        }
        rx.await.ok()
    }

    /// The linger for a batch that starts now.
    fn linger_now(&self) -> Duration {
        let last = *self.last_call.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some((at, keys)) if keys > 1 && at.elapsed() < self.linger.busy_for => self.linger.busy,
            _ => self.linger.idle,
        }
    }

    /// Sends every pending key in batches of at most `max`, once no other call is out; keys
    /// that come while a call is out go in the next.
    async fn flush(self: Arc<Self>) {
        let _turn = self.turn.lock().await;
        loop {
            let batch: Vec<(K, oneshot::Sender<V>)> = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let n = pending.len().min(self.max);
                pending.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let (keys, senders): (Vec<K>, Vec<oneshot::Sender<V>>) = batch.into_iter().unzip();
            let carried = keys.len();
            let results = (self.call)(keys).await;
            *self.last_call.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), carried));
            // A caller that gave up (its reconcile was cancelled) no longer listens.
            for (sender, result) in senders.into_iter().zip(results) {
                let _ = sender.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn doubling(calls: Arc<AtomicUsize>, sizes: Arc<Mutex<Vec<usize>>>) -> BatchCall<u32, u32> {
        Arc::new(move |keys: Vec<u32>| {
            calls.fetch_add(1, Ordering::SeqCst);
            sizes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(keys.len());
            Box::pin(async move { keys.into_iter().map(|k| k * 2).collect() })
        })
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_call_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::default();
        let batcher = Batcher::new(
            Linger::fixed(Duration::from_millis(20)),
            100,
            doubling(calls.clone(), sizes),
        );
        let answers = futures::future::join_all((0..50u32).map(|k| {
            let b = batcher.clone();
            async move { b.call(k).await }
        }))
        .await;
        assert_eq!(answers, (0..50u32).map(|k| Some(k * 2)).collect::<Vec<_>>());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_batch_never_holds_more_than_its_maximum() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::new(
            Linger::fixed(Duration::from_millis(20)),
            16,
            doubling(calls.clone(), sizes.clone()),
        );
        let answers = futures::future::join_all((0..100u32).map(|k| {
            let b = batcher.clone();
            async move { b.call(k).await }
        }))
        .await;
        assert_eq!(answers.iter().flatten().count(), 100);
        let sizes = sizes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(sizes.iter().all(|&n| n <= 16), "batch sizes {sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(calls.load(Ordering::SeqCst) >= 7);
    }

    #[tokio::test]
    async fn keys_that_come_while_a_call_is_out_go_together_in_the_next_call() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let call: BatchCall<u32, u32> = {
            let (sizes, gate) = (sizes.clone(), gate.clone());
            Arc::new(move |keys: Vec<u32>| {
                let (sizes, gate) = (sizes.clone(), gate.clone());
                Box::pin(async move {
                    sizes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(keys.len());
                    // Each call waits for one permit: the first stays out until released.
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    keys.into_iter().map(|k| k * 2).collect()
                })
            })
        };
        let batcher = Batcher::new(Linger::fixed(Duration::from_millis(1)), 100, call);
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(0).await }
        });
        while sizes.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The first call is out: ten more keys, each well past the linger of the one before.
        let mut later = Vec::new();
        for k in 1..=10u32 {
            let b = batcher.clone();
            later.push(tokio::spawn(async move { b.call(k).await }));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        gate.add_permits(100);
        assert_eq!(first.await.ok().flatten(), Some(0));
        for (k, handle) in (1..=10u32).zip(later) {
            assert_eq!(handle.await.ok().flatten(), Some(k * 2));
        }
        let sizes = sizes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(sizes, [1, 10]);
    }

    #[tokio::test]
    async fn a_caller_after_a_batch_went_out_starts_the_next_one() {
        let calls = Arc::new(AtomicUsize::new(0));
        let batcher = Batcher::new(
            Linger::fixed(Duration::from_millis(5)),
            100,
            doubling(calls.clone(), Arc::default()),
        );
        assert_eq!(batcher.call(1).await, Some(2));
        assert_eq!(batcher.call(2).await, Some(4));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_just_after_a_batch_of_several_waits_the_busy_linger_and_one_after_a_lone_key_or_a_pause_the_idle_one()
     {
        let calls = Arc::new(AtomicUsize::new(0));
        let linger = Linger {
            idle: Duration::from_millis(10),
            busy: Duration::from_millis(200),
            busy_for: Duration::from_secs(1),
        };
        let batcher = Batcher::new(linger, 100, doubling(calls.clone(), Arc::default()));
        let lone = |k: u32| {
            let b = batcher.clone();
            async move {
                let start = tokio::time::Instant::now();
                assert_eq!(b.call(k).await, Some(k * 2));
                start.elapsed()
            }
        };
        // Changes one after the other: each goes after the short linger.
        assert_eq!(lone(1).await, Duration::from_millis(10));
        assert_eq!(lone(2).await, Duration::from_millis(10));
        // A batch of several: a burst is on, so the next batch waits the longer linger.
        let both = futures::future::join(lone(3), lone(4)).await;
        assert_eq!(both, (Duration::from_millis(10), Duration::from_millis(10)));
        assert_eq!(lone(5).await, Duration::from_millis(200));
        // After a pause longer than `busy_for`: the short one again.
        let both = futures::future::join(lone(6), lone(7)).await;
        assert_eq!(both, (Duration::from_millis(10), Duration::from_millis(10)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(lone(8).await, Duration::from_millis(10));
    }
}
