//! When `/readyz` turns green.
//!
//! A leader is ready once its ScaledObject cache synced *and* every object found at that moment
//! was polled once: before that the metrics it would serve are empty, and an HPA reading them
//! would see "no value" for a working trigger. Objects that will not be polled do not hold
//! readiness back: gone, deleting, paused, not Ready (invalid spec or target), or whose
//! reconcile failed. A follower needs a synced cache
//! and a known leader (it forwards metric reads to it). Readiness is never lowered again here: a
//! ready follower that becomes leader keeps serving while its first polls run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Leadership;
use crate::controller::pause::Pause;
use crate::crd::ScaledObject;
use crate::crd::names::condition;
use crate::scaling::poll::PolledObject;
use crate::scaling::scheduler::{ObjectKey, Scheduler};
use crate::telemetry::Readiness;

/// How often the gates look again; they wait on cheap in-memory state.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Longest wait for the first round of polls after the cache synced: a hung first poll must
/// not keep a working leader out of its Service forever.
const FIRST_ROUND_GRACE: Duration = Duration::from_secs(30);

/// Page size of the initial list: bounds the memory of one page of full objects.
pub(super) const PAGE_SIZE: u32 = 500;

/// The objects whose last reconcile failed: they are not polled until a retry succeeds.
#[derive(Debug, Clone, Default)]
pub(super) struct Reconciled(Arc<Mutex<HashSet<ObjectKey>>>);

impl Reconciled {
    /// Note how one reconcile ended.
    pub(super) fn record<E, Q>(
        &self,
        result: &Result<(ObjectRef<ScaledObject>, Action), controller::Error<E, Q>>,
    ) {
        let mut failed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok((object, _)) => {
                failed.remove(&key(object.namespace.as_deref(), &object.name));
            }
            Err(controller::Error::ReconcilerFailed(_, object)) => {
                failed.insert(key(object.namespace.as_deref(), &object.name));
            }
            Err(_) => {}
        }
    }

    fn failed(&self, key: &ObjectKey) -> bool {
        let failed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        failed.contains(key)
    }
}

/// Whether the first round may go on without `key`'s first poll: polled already, or an object
/// that will not be polled now.
fn settled(
    key: &ObjectKey,
    cache: &Cache,
    scheduler: &Scheduler<PolledObject>,
    reconciled: &Reconciled,
) -> bool {
    scheduler.was_polled(key) || reconciled.failed(key) || cache.not_polled(key)
}

/// Whether `object` will not be polled as it is: deleting, paused, or not Ready.
fn not_polled(object: &ScaledObject) -> bool {
    let not_ready = object.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition::READY && c.status == "False")
    });
    object.metadata.deletion_timestamp.is_some() || Pause::of(object).is_some() || not_ready
}

fn key(namespace: Option<&str>, name: &str) -> ObjectKey {
    (namespace.unwrap_or_default().to_owned(), name.to_owned())
}

/// Which ScaledObjects exist and whether each will be polled, and whether the initial list is
/// in: all readiness needs. Only a flag per object is kept — the controller holds the objects
/// themselves, and a second full copy cost kilobytes per object (benches/operator_scale.rs).
///
/// Sync is read from the watch stream's `InitDone` event, never from
/// `Store::wait_until_ready`: kube-runtime's ready signal keeps the waker of one waiter only,
/// and the Controller's runner already waits on its own store, so a second waiter there can
/// starve either the runner or us.
#[derive(Clone)]
pub(super) struct Cache {
    /// Object → it will not be polled as it is (see [`not_polled`]).
    objects: Arc<Mutex<Summaries>>,
    synced: watch::Receiver<bool>,
}

#[derive(Default)]
struct Summaries {
    live: HashMap<ObjectKey, bool>,
    /// The map being rebuilt by a (re)list, swapped in when it completes.
    relist: Option<HashMap<ObjectKey, bool>>,
}

impl Summaries {
    fn apply(&mut self, event: watcher::Event<ScaledObject>) {
        let summary = |o: &ScaledObject| (key_of(o), not_polled(o));
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                let (key, skip) = summary(&object);
                self.relist.get_or_insert_default().insert(key, skip);
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = self.relist.take() {
                    self.live = relisted;
                }
            }
            watcher::Event::Apply(object) => {
                let (key, skip) = summary(&object);
                self.live.insert(key, skip);
            }
            watcher::Event::Delete(object) => {
                self.live.remove(&key_of(&object));
            }
        }
    }
}

fn key_of(object: &ScaledObject) -> ObjectKey {
    key(
        object.metadata.namespace.as_deref(),
        object.metadata.name.as_deref().unwrap_or_default(),
    )
}

impl Cache {
    /// Start watching `api` until `cancel` fires.
    pub(super) fn spawn(api: Api<ScaledObject>, cancel: &CancellationToken) -> Self {
        let objects = Arc::new(Mutex::new(Summaries::default()));
        let (synced_tx, synced) = watch::channel(false);
        let events = watcher(api, watcher::Config::default().page_size(PAGE_SIZE))
            .backoff(super::watch_backoff::watch_backoff())
            .take_until(cancel.clone().cancelled_owned());
        let summaries = Arc::clone(&objects);
        tokio::spawn(events.for_each(move |event| {
            if let Ok(event) = event {
                let done = matches!(event, watcher::Event::InitDone);
                lock(&summaries).apply(event);
                if done {
                    synced_tx.send_replace(true);
                }
            }
            futures::future::ready(())
        }));
        Self { objects, synced }
    }

    /// Wait until the initial list is in the store; false when the watch ended first.
    async fn synced(&mut self) -> bool {
        self.synced.wait_for(|synced| *synced).await.is_ok()
    }

    /// Every object known now.
    fn keys(&self) -> Vec<ObjectKey> {
        lock(&self.objects).live.keys().cloned().collect()
    }

    /// Gone, or will not be polled as it is.
    fn not_polled(&self, key: &ObjectKey) -> bool {
        lock(&self.objects).live.get(key).is_none_or(|skip| *skip)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Raise `first_round` once `cache` synced and every object in it then is [`settled`], or
/// after [`FIRST_ROUND_GRACE`]. Returns early when `cancel` fires.
pub(super) async fn first_round(
    mut cache: Cache,
    reconciled: Reconciled,
    scheduler: Scheduler<PolledObject>,
    first_round: Readiness,
    cancel: CancellationToken,
) {
    let synced = tokio::select! {
        () = cancel.cancelled() => return,
        synced = cache.synced() => synced,
    };
    if !synced {
        return;
    }
    let mut expected = cache.keys();
    let deadline = tokio::time::Instant::now() + FIRST_ROUND_GRACE;
    let objects = expected.len();
    loop {
        expected.retain(|key| !settled(key, &cache, &scheduler, &reconciled));
        if expected.is_empty() {
            info!(objects, "first round of polls done");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                objects,
                unpolled = expected.len(),
                "first round of polls unfinished; ready anyway"
            );
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    first_round.set_ready();
}

/// With leader election: raise `readiness` once `cache` synced and either we lead and the
/// leader's `first_round` is raised, or another replica is known to lead (followers forward
/// metric reads to it). Returns when ready or when `cancel` fires.
pub(super) async fn follower_or_leader(
    mut cache: Cache,
    mut leadership: watch::Receiver<Leadership>,
    first_round: Readiness,
    readiness: Readiness,
    cancel: CancellationToken,
) {
    let synced = tokio::select! {
        () = cancel.cancelled() => false,
        synced = cache.synced() => synced,
    };
    while synced && !cancel.is_cancelled() {
        let ready = {
            let now = leadership.borrow_and_update();
            if now.is_leader {
                first_round.is_ready()
            } else {
                now.holder.is_some()
            }
        };
        if ready {
            readiness.set_ready();
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = leadership.changed() => {}
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
