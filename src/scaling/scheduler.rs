//! One scheduler for every ScaledObject (design.md §4.3): a single timer queue instead of a
//! task per object, polls spread by jitter so thousands of objects with the same interval do
//! not all fire in the same millisecond, and a bound on polls in flight.
//!
//! It also counts the objects whose first poll has not finished yet ([`Scheduler::unpolled`]):
//! a leader reports ready only once every object it found at start has been polled, so the
//! metrics it serves are real values, not empty ones.
//!
//! Its token ends a leadership term: when it fires, polls still in flight are dropped (and
//! each poll checks the token before writing), and [`Scheduler::stopped`] resolves once none
//! is left, so a replica that lost its Lease writes no `/scale` after the term is over. The
//! same holds per object: replacing or removing one ends its registration's own token (a child
//! of the scheduler's), and [`Scheduler::remove`] returns once its poll in flight is gone, so a
//! paused or deleted object's target is not scaled by a poll that started before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::{DelayQueue, delay_queue};

/// `namespace/name` of a scheduled object.
pub type ObjectKey = (String, String);

/// The key as the scheduler keeps it: once per object, shared by its maps, its timer and its
/// poll tasks (four copies of two strings per object, with 10,000 of them, were ~3 MB).
type SharedKey = Arc<ObjectKey>;

/// Something the scheduler polls on an interval.
pub trait Pollable: Send + Sync + 'static {
    /// Time between two polls.
    fn interval(&self) -> Duration;
    /// Run one poll, writing nothing once `stop` fired (the poll is also dropped then, at
    /// its next await).
    fn poll(self: Arc<Self>, stop: CancellationToken) -> futures::future::BoxFuture<'static, ()>;
    /// A poll is starting `lateness` after it was due (timer and in-flight bound included).
    fn started_late(&self, _lateness: Duration) {}
}

enum Command<P> {
    Upsert(SharedKey, Arc<P>, Registration),
    Remove(ObjectKey),
}

/// One registration of an object: ends when the object is replaced or removed, or when the
/// scheduler stops (its token is a child of the scheduler's).
#[derive(Clone)]
struct Registration {
    stop: CancellationToken,
    /// Its polls in flight.
    polls: TaskTracker,
}

impl Registration {
    fn new(scheduler: &CancellationToken) -> Self {
        Self {
            stop: scheduler.child_token(),
            polls: TaskTracker::new(),
        }
    }

    /// Drop its polls in flight (at their next await) and start no other.
    fn end(&self) {
        self.stop.cancel();
        self.polls.close();
    }
}

/// Handle to add, replace and remove objects; cheap to clone.
pub struct Scheduler<P> {
    commands: mpsc::UnboundedSender<Command<P>>,
    first_polls: Arc<FirstPolls>,
    polls: TaskTracker,
    cancel: CancellationToken,
    /// The current registration of each object, updated synchronously by upsert and remove.
    registrations: Arc<Mutex<HashMap<SharedKey, Registration>>>,
}

impl<P> Clone for Scheduler<P> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            first_polls: Arc::clone(&self.first_polls),
            polls: self.polls.clone(),
            cancel: self.cancel.clone(),
            registrations: Arc::clone(&self.registrations),
        }
    }
}

/// Which registered objects have not finished a first poll. Updated synchronously by
/// [`Scheduler::upsert`], so a caller that registered an object and then reads
/// [`Scheduler::unpolled`] never sees it counted as done before it was polled.
#[derive(Default)]
struct FirstPolls {
    keys: Mutex<FirstPollKeys>,
    unpolled: watch::Sender<usize>,
}

#[derive(Default)]
struct FirstPollKeys {
    pending: HashSet<SharedKey>,
    done: HashSet<SharedKey>,
}

impl FirstPolls {
    fn update(&self, change: impl FnOnce(&mut FirstPollKeys)) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut keys);
        let pending = keys.pending.len();
        self.unpolled.send_if_modified(|count| {
            let changed = *count != pending;
            *count = pending;
            changed
        });
    }

    fn registered(&self, key: &SharedKey) {
        self.update(|keys| {
            if !keys.done.contains(key) {
                keys.pending.insert(Arc::clone(key));
            }
        });
    }

    fn removed(&self, key: &ObjectKey) {
        self.update(|keys| {
            keys.pending.remove(key);
            keys.done.remove(key);
        });
    }

    fn polled(&self, key: &SharedKey) {
        self.update(|keys| {
            if keys.pending.remove(key) {
                keys.done.insert(Arc::clone(key));
            }
        });
    }
}

impl<P: Pollable> Scheduler<P> {
    /// Start the scheduler; it stops when `cancel` fires, dropping the polls in flight. At
    /// most `max_in_flight` polls run at once.
    pub fn start(max_in_flight: usize, cancel: CancellationToken) -> Self {
        Self::start_on(&tokio::runtime::Handle::current(), max_in_flight, cancel)
    }

    /// [`Scheduler::start`] with the scheduler and its polls on `runtime` (the operator's
    /// [`poll_runtime`](super::runtime::poll_runtime)).
    pub fn start_on(
        runtime: &tokio::runtime::Handle,
        max_in_flight: usize,
        cancel: CancellationToken,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let first_polls = Arc::new(FirstPolls::default());
        let polls = TaskTracker::new();
        runtime.spawn(run(
            rx,
            Runner {
                permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
                first_polls: Arc::clone(&first_polls),
                polls: polls.clone(),
                cancel: cancel.clone(),
            },
        ));
        Self {
            commands,
            first_polls,
            polls,
            cancel,
            registrations: Arc::default(),
        }
    }

    /// Resolves once the scheduler stopped (its token fired) and no poll is running anymore.
    pub async fn stopped(&self) {
        self.polls.wait().await;
    }

    /// Poll `object` now and then every interval, replacing what `key` had (whose poll in
    /// flight, if any, is dropped at its next await).
    pub fn upsert(&self, key: ObjectKey, object: Arc<P>) {
        let key = Arc::new(key);
        self.first_polls.registered(&key);
        let registration = Registration::new(&self.cancel);
        if let Some(previous) = self.swap(&key, registration.clone()) {
            previous.end();
        }
        // The scheduler only stops on cancellation, when nobody needs it anymore.
        let _ = self
            .commands
            .send(Command::Upsert(key, object, registration));
    }

    /// Stop polling `key`; returns once its poll in flight, if any, was dropped, so nothing
    /// of it writes afterwards.
    pub async fn remove(&self, key: ObjectKey) {
        self.first_polls.removed(&key);
        let previous = self
            .registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        let _ = self.commands.send(Command::Remove(key));
        if let Some(previous) = previous {
            previous.end();
            previous.polls.wait().await;
        }
    }

    /// Make `registration` the one of `key`; the previous one.
    fn swap(&self, key: &SharedKey, registration: Registration) -> Option<Registration> {
        let mut registrations = self
            .registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        registrations.insert(Arc::clone(key), registration)
    }

    /// How many registered objects have not finished their first poll yet; 0 once every
    /// object registered so far was polled at least once (a failed poll counts as finished).
    pub fn unpolled(&self) -> watch::Receiver<usize> {
        self.first_polls.unpolled.subscribe()
    }

    /// Whether `key` is registered and finished at least one poll.
    pub fn was_polled(&self, key: &ObjectKey) -> bool {
        let keys = self.first_polls.keys.lock();
        keys.unwrap_or_else(PoisonError::into_inner)
            .done
            .contains(key)
    }
}

/// What the scheduler's task needs to start polls.
struct Runner {
    permits: Arc<Semaphore>,
    first_polls: Arc<FirstPolls>,
    /// Every poll task; closed when the scheduler stops.
    polls: TaskTracker,
    cancel: CancellationToken,
}

impl Runner {
    /// Poll `object` (due at `due`) in a task of its own, once a permit is free; the task ends
    /// as soon as the registration's token fires, dropping the poll wherever it waits.
    fn spawn<P: Pollable>(
        &self,
        key: SharedKey,
        object: Arc<P>,
        registration: &Registration,
        busy: Arc<AtomicBool>,
        due: tokio::time::Instant,
    ) {
        let permits = Arc::clone(&self.permits);
        let first_polls = Arc::clone(&self.first_polls);
        let stop = registration.stop.clone();
        // However the task ends (polled, dropped by the token, or never run), the next tick
        // may run: the flag is cleared when the future is dropped.
        let idle = Idle(busy);
        let task = registration.polls.track_future(async move {
            let _idle = idle;
            let poll = async {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                object.started_late(tokio::time::Instant::now().saturating_duration_since(due));
                object.poll(stop.clone()).await;
                first_polls.polled(&key);
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => {}
                () = poll => {}
            }
        });
        self.polls.spawn(task);
    }
}

async fn run<P: Pollable>(mut rx: mpsc::UnboundedReceiver<Command<P>>, runner: Runner) {
    let mut queue: DelayQueue<SharedKey> = DelayQueue::new();
    let mut entries: HashMap<SharedKey, Entry<P>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            () = runner.cancel.cancelled() => break,
            command = rx.recv() => match command {
                None => break,
                Some(Command::Upsert(key, object, registration)) => {
                    if let Some(entry) = entries.remove(&key) {
                        queue.remove(&entry.timer);
                    }
                    let timer = queue.insert(Arc::clone(&key), Duration::ZERO);
                    let busy = Arc::default();
                    entries.insert(key, Entry { object, registration, timer, busy });
                }
                Some(Command::Remove(key)) => {
                    if let Some(entry) = entries.remove(&key) {
                        queue.remove(&entry.timer);
                    }
                }
            },
            Some(expired) = queue.next(), if !queue.is_empty() => {
                let due = expired.deadline();
                let key = expired.into_inner();
                let Some(entry) = entries.get_mut(&key) else { continue };
                entry.timer = queue.insert(Arc::clone(&key), jittered(entry.object.interval()));
                // Still waiting for a slot or polling: skip this tick, as a Go ticker drops
                // ticks (KEDA's loop). Queuing it would pile up a task per object per interval
                // while the backend is slower than the schedule (10,000 objects: 1.5 GB).
                if entry.busy.swap(true, Ordering::AcqRel) {
                    continue;
                }
                let (object, busy) = (Arc::clone(&entry.object), Arc::clone(&entry.busy));
                runner.spawn(key, object, &entry.registration, busy, due);
            }
        }
    }
    // Polls still running end at their next await (they watch the same token); `stopped`
    // waits for them.
    runner.polls.close();
}

/// One scheduled object: what to poll, its registration, its timer, and whether a poll of it
/// is queued or running.
struct Entry<P> {
    object: Arc<P>,
    registration: Registration,
    timer: delay_queue::Key,
    busy: Arc<AtomicBool>,
}

/// Clears an object's busy flag when its poll task ends, however it ends.
struct Idle(Arc<AtomicBool>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `interval` ± 10 %, so objects created together drift apart.
fn jittered(interval: Duration) -> Duration {
    let spread = interval.as_secs_f64() * 0.1;
    let offset = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.001))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counter {
        polls: AtomicUsize,
        interval: Duration,
    }

    impl Pollable for Counter {
        fn interval(&self) -> Duration {
            self.interval
        }
        fn poll(self: Arc<Self>, _: CancellationToken) -> futures::future::BoxFuture<'static, ()> {
            Box::pin(async move {
                self.polls.fetch_add(1, Ordering::SeqCst);
            })
        }
    }

    fn counter(ms: u64) -> Arc<Counter> {
        Arc::new(Counter {
            polls: AtomicUsize::new(0),
            interval: Duration::from_millis(ms),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn polls_at_once_then_every_interval_until_removed() {
        let cancel = CancellationToken::new();
        let scheduler = Scheduler::start(8, cancel.clone());
        let object = counter(1000);
        scheduler.upsert(("ns".into(), "a".into()), Arc::clone(&object));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            object.polls.load(Ordering::SeqCst),
            1,
            "first poll is immediate"
        );
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let polls = object.polls.load(Ordering::SeqCst);
        assert!((5..=7).contains(&polls), "about one poll a second: {polls}");
        scheduler.remove(("ns".into(), "a".into())).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let after_remove = object.polls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(object.polls.load(Ordering::SeqCst), after_remove);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn upsert_replaces_the_previous_object() {
        let scheduler = Scheduler::start(8, CancellationToken::new());
        let (old, new) = (counter(1000), counter(1000));
        scheduler.upsert(("ns".into(), "a".into()), Arc::clone(&old));
        tokio::time::sleep(Duration::from_millis(10)).await;
        scheduler.upsert(("ns".into(), "a".into()), Arc::clone(&new));
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(old.polls.load(Ordering::SeqCst), 1);
        assert!(new.polls.load(Ordering::SeqCst) >= 3);
    }

    struct Slow(Duration);

    impl Pollable for Slow {
        fn interval(&self) -> Duration {
            Duration::from_secs(60)
        }
        fn poll(self: Arc<Self>, _: CancellationToken) -> futures::future::BoxFuture<'static, ()> {
            Box::pin(tokio::time::sleep(self.0))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unpolled_counts_objects_until_their_first_poll_finishes() {
        let scheduler = Scheduler::start(8, CancellationToken::new());
        let unpolled = scheduler.unpolled();
        assert_eq!(
            *unpolled.borrow(),
            0,
            "nothing registered, nothing to wait for"
        );
        scheduler.upsert(
            ("ns".into(), "a".into()),
            Arc::new(Slow(Duration::from_secs(1))),
        );
        scheduler.upsert(
            ("ns".into(), "b".into()),
            Arc::new(Slow(Duration::from_secs(3))),
        );
        assert_eq!(*unpolled.borrow(), 2, "counted as soon as upsert returns");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(*unpolled.borrow(), 1, "a finished, b still polling");
        assert!(scheduler.was_polled(&("ns".into(), "a".into())));
        assert!(!scheduler.was_polled(&("ns".into(), "b".into())));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(*unpolled.borrow(), 0);
        scheduler.upsert(
            ("ns".into(), "a".into()),
            Arc::new(Slow(Duration::from_secs(1))),
        );
        assert_eq!(
            *unpolled.borrow(),
            0,
            "a new revision of a polled object is not waited for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn removing_an_unpolled_object_stops_waiting_for_it() {
        let scheduler = Scheduler::start(8, CancellationToken::new());
        scheduler.upsert(
            ("ns".into(), "a".into()),
            Arc::new(Slow(Duration::from_secs(10))),
        );
        assert_eq!(*scheduler.unpolled().borrow(), 1);
        scheduler.remove(("ns".into(), "a".into())).await;
        assert_eq!(*scheduler.unpolled().borrow(), 0);
    }

    /// Waits for its backend, then writes without looking at the token: only the scheduler
    /// can keep it from writing once the token fired.
    struct WritesAfter {
        backend: Duration,
        writes: AtomicUsize,
    }

    impl Pollable for WritesAfter {
        fn interval(&self) -> Duration {
            Duration::from_secs(60)
        }
        fn poll(self: Arc<Self>, _: CancellationToken) -> futures::future::BoxFuture<'static, ()> {
            Box::pin(async move {
                tokio::time::sleep(self.backend).await;
                self.writes.fetch_add(1, Ordering::SeqCst);
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fired_token_drops_polls_in_flight_before_they_write() {
        let term = CancellationToken::new();
        let scheduler = Scheduler::start(8, term.clone());
        let object = Arc::new(WritesAfter {
            backend: Duration::from_secs(2),
            writes: AtomicUsize::new(0),
        });
        scheduler.upsert(("ns".into(), "a".into()), Arc::clone(&object));
        tokio::time::sleep(Duration::from_secs(1)).await;
        term.cancel();
        tokio::time::timeout(Duration::from_millis(10), scheduler.stopped())
            .await
            .expect("no poll is left running once the token fired");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(
            object.writes.load(Ordering::SeqCst),
            0,
            "no write after the term"
        );
        assert!(!scheduler.was_polled(&("ns".into(), "a".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn removing_or_replacing_an_object_drops_its_poll_in_flight() {
        let scheduler = Scheduler::start(8, CancellationToken::new());
        let writes_after = |backend| {
            Arc::new(WritesAfter {
                backend,
                writes: AtomicUsize::new(0),
            })
        };
        let (removed, replaced) = (
            writes_after(Duration::from_secs(2)),
            writes_after(Duration::from_secs(2)),
        );
        scheduler.upsert(("ns".into(), "a".into()), Arc::clone(&removed));
        scheduler.upsert(("ns".into(), "b".into()), Arc::clone(&replaced));
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::time::timeout(
            Duration::from_millis(10),
            scheduler.remove(("ns".into(), "a".into())),
        )
        .await
        .expect("remove returns once the poll in flight is dropped");
        let replacement = writes_after(Duration::ZERO);
        scheduler.upsert(("ns".into(), "b".into()), Arc::clone(&replacement));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            removed.writes.load(Ordering::SeqCst),
            0,
            "removed: no write"
        );
        assert_eq!(
            replaced.writes.load(Ordering::SeqCst),
            0,
            "replaced: no write"
        );
        assert_eq!(
            replacement.writes.load(Ordering::SeqCst),
            1,
            "the new one polls"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_waits_for_the_token() {
        let term = CancellationToken::new();
        let scheduler = Scheduler::start(8, term.clone());
        scheduler.upsert(("ns".into(), "a".into()), counter(1000));
        let waited = tokio::time::timeout(Duration::from_secs(5), scheduler.stopped()).await;
        assert!(waited.is_err(), "still scheduling");
        term.cancel();
        scheduler.stopped().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_slower_than_its_interval_skips_ticks_instead_of_queuing_them() {
        struct Counted(AtomicUsize);
        impl Pollable for Counted {
            fn interval(&self) -> Duration {
                Duration::from_millis(100)
            }
            fn poll(
                self: Arc<Self>,
                _: CancellationToken,
            ) -> futures::future::BoxFuture<'static, ()> {
                Box::pin(async move {
                    self.0.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                })
            }
        }
        let scheduler = Scheduler::start(8, CancellationToken::new());
        let object = Arc::new(Counted(AtomicUsize::new(0)));
        scheduler.upsert(("ns".into(), "slow".into()), Arc::clone(&object));
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let polls = object.0.load(Ordering::SeqCst);
        assert!((3..=5).contains(&polls), "one poll at a time: {polls}");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(30));
            assert!(
                d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
                "{d:?}"
            );
        }
    }
}
