//! Fair queueing of reconciles (issue #10): a change in one namespace is not starved by a
//! backlog in another. kube-runtime's controller runs what is due in the order it became due,
//! so 10 000 Topics applied in one namespace would hold a single Topic applied in another behind
//! all of them. Here every trigger goes to a queue per namespace first, and the queues take
//! turns for the controller's slots: at most `concurrency` objects are handed to the controller
//! at once, the next going to whichever namespace is next in turn. Within a namespace, first
//! come, first served.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Items waiting, one first-in-first-out queue per group (namespace), the groups taking turns.
/// An item already waiting is not queued twice.
#[derive(Debug)]
pub struct FairQueue<G, T> {
    queues: HashMap<G, VecDeque<T>>,
    /// Groups with items, in turn order.
    turns: VecDeque<G>,
    waiting: HashSet<T>,
}

impl<G, T> Default for FairQueue<G, T> {
    fn default() -> Self {
        FairQueue {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            waiting: HashSet::new(),
        }
    }
}

impl<G: Clone + Eq + Hash, T: Clone + Eq + Hash> FairQueue<G, T> {
    /// Queues `item` of `group`, unless it is already waiting.
    pub fn push(&mut self, group: G, item: T) {
        if !self.waiting.insert(item.clone()) {
            return;
        }
        let queue = self.queues.entry(group.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(group);
        }
        queue.push_back(item);
    }

    /// The next item: the oldest of the group whose turn it is; that group goes to the back.
    pub fn pop(&mut self) -> Option<T> {
        let group = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&group)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&group);
        } else {
            self.turns.push_back(group);
        }
        self.waiting.remove(&item);
        Some(item)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// `(namespace, name)` of an object: what a trigger and a controller's result both name.
pub type Key = (Option<String>, String);

/// The slots handed out and not yet given back, by object.
#[derive(Clone, Default)]
pub struct Slots {
    held: Arc<Mutex<HashMap<Key, OwnedSemaphorePermit>>>,
}

impl Slots {
    /// Gives back the slot of `key`'s reconcile, which ended (however it ended).
    pub fn release(&self, key: &Key) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn hold(&self, key: Key, permit: OwnedSemaphorePermit) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, permit);
    }
}

/// Forwards `triggers` to `controller` fairly between namespaces, at most `concurrency` at a
/// time; each reconcile's end must be reported through [`Slots::release`]. Runs until
/// `triggers` ends or the controller stops listening.
pub async fn dispatch<T>(
    triggers: impl Stream<Item = T> + Send,
    key_of: impl Fn(&T) -> Key + Send,
    controller: UnboundedSender<T>,
    concurrency: usize,
    slots: Slots,
) where
    T: Clone + Eq + Hash + Send,
{
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut queue: FairQueue<Option<String>, T> = FairQueue::default();
    let mut triggers = std::pin::pin!(triggers);
    loop {
        if queue.is_empty() {
            match triggers.next().await {
                Some(item) => queue.push(key_of(&item).0, item),
                None => return,
            }
            continue;
        }
        tokio::select! {
            // New triggers first: a burst is queued whole before slots are handed out, so its
            // namespace takes its turns with the others from the start.
            biased;
            next = triggers.next() => match next {
                Some(item) => queue.push(key_of(&item).0, item),
                None => return,
            },
            permit = semaphore.clone().acquire_owned() => {
                let Ok(permit) = permit else { return };
                let Some(item) = queue.pop() else { continue };
                let key = key_of(&item);
                slots.hold(key, permit);
                if controller.unbounded_send(item).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_take_turns_whatever_their_backlog() {
        let mut q = FairQueue::default();
        for i in 0..1000 {
            q.push("busy", format!("busy/{i}"));
        }
        q.push("quiet", "quiet/0".to_string());
        assert_eq!(q.pop().as_deref(), Some("busy/0"));
        assert_eq!(q.pop().as_deref(), Some("quiet/0"));
        assert_eq!(q.pop().as_deref(), Some("busy/1"));
        assert_eq!(q.len(), 998);
    }

    #[test]
    fn within_a_namespace_first_come_first_served() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push("ns", i);
        }
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(0), Some(1), Some(2), None)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn an_object_already_waiting_is_not_queued_twice() {
        let mut q = FairQueue::default();
        q.push("ns", "a");
        q.push("ns", "b");
        q.push("ns", "a");
        assert_eq!(q.len(), 2);
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some("a"), Some("b"), None));
        q.push("ns", "a");
        assert_eq!(q.pop(), Some("a"), "once handed out it may be queued again");
    }

    #[tokio::test]
    async fn no_more_than_the_concurrency_is_handed_out_until_slots_come_back() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded::<(Option<String>, String)>();
        let slots = Slots::default();
        let triggers =
            futures::stream::iter((0..10).map(|i| (Some("a".to_string()), format!("t{i}"))))
                .chain(futures::stream::pending());
        tokio::spawn(dispatch(triggers, |k| k.clone(), tx, 3, slots.clone()));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.next().await.unwrap_or_default());
        }
        let more = tokio::time::timeout(std::time::Duration::from_millis(100), rx.next()).await;
        assert!(
            more.is_err(),
            "a fourth was handed out with three slots held"
        );
        slots.release(&got[0]);
        let fourth = tokio::time::timeout(std::time::Duration::from_secs(1), rx.next()).await;
        assert_eq!(fourth.ok().flatten().map(|k| k.1).as_deref(), Some("t3"));
    }
}
