//! When `/readyz` turns green.
//!
//! A leader is ready once its ScaledObject cache synced *and* every object found at that moment
//! was polled once: before that the metrics it would serve are empty, and an HPA reading them
//! would see "no value" for a working trigger. Objects that will not be polled do not hold
//! readiness back: gone, deleting, paused, not Ready (invalid spec or target), or whose
//! reconcile failed. A follower needs a synced cache
//! and a known leader (it forwards metric reads to it). Readiness is never lowered again here: a
//! ready follower that becomes leader keeps serving while its first polls run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
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
    cache: &Store<ScaledObject>,
    scheduler: &Scheduler<PolledObject>,
    reconciled: &Reconciled,
) -> bool {
    if scheduler.was_polled(key) || reconciled.failed(key) {
        return true;
    }
    let Some(object) = cache.get(&ObjectRef::new(&key.1).within(&key.0)) else {
        return true;
    };
    let not_ready = object.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition::READY && c.status == "False")
    });
    object.metadata.deletion_timestamp.is_some() || Pause::of(&object).is_some() || not_ready
}

fn key(namespace: Option<&str>, name: &str) -> ObjectKey {
    (namespace.unwrap_or_default().to_owned(), name.to_owned())
}

/// A ScaledObject cache of our own and whether its initial list is in.
///
/// Sync is read from the watch stream's `InitDone` event, never from
/// `Store::wait_until_ready`: kube-runtime's ready signal keeps the waker of one waiter only,
/// and the Controller's runner already waits on its own store, so a second waiter there can
/// starve either the runner or us.
#[derive(Clone)]
pub(super) struct Cache {
    /// The ScaledObjects.
    pub(super) store: Store<ScaledObject>,
    synced: watch::Receiver<bool>,
}

impl Cache {
    /// Start watching `api` until `cancel` fires.
    pub(super) fn spawn(api: Api<ScaledObject>, cancel: &CancellationToken) -> Self {
        let (store, writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(false);
        let events = watcher(api, watcher::Config::default())
            .backoff(super::watch_backoff::watch_backoff())
            .reflect(writer)
            .take_until(cancel.clone().cancelled_owned());
        tokio::spawn(events.for_each(move |event| {
            // `reflect` applied the event to the store before passing it on.
            if matches!(event, Ok(watcher::Event::InitDone)) {
                synced_tx.send_replace(true);
            }
            futures::future::ready(())
        }));
        Self { store, synced }
    }

    /// Wait until the initial list is in the store; false when the watch ended first.
    async fn synced(&mut self) -> bool {
        self.synced.wait_for(|synced| *synced).await.is_ok()
    }
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
    let mut expected: Vec<ObjectKey> = cache
        .store
        .state()
        .iter()
        .map(|o| {
            key(
                o.metadata.namespace.as_deref(),
                o.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let deadline = tokio::time::Instant::now() + FIRST_ROUND_GRACE;
    let objects = expected.len();
    loop {
        expected.retain(|key| !settled(key, &cache.store, &scheduler, &reconciled));
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
