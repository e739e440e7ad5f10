//! Leader election with a `coordination.k8s.io/v1` Lease, client-go's algorithm
//! (spec/kubernetes.md §6), so several operator replicas can run and exactly one polls and
//! writes (design.md §1).
//!
//! Why client-go's algorithm and not something simpler: its safety rests on measuring a
//! holder's lease from the *local* time we last saw the record change, never from the
//! `renewTime` the holder wrote, so clock skew between nodes cannot make two replicas lead at
//! once; a leader that cannot renew for `renew_deadline` (< `lease_duration`) steps down
//! before anyone else may take over. Every write carries the `resourceVersion` it read, so
//! two candidates racing for the same Lease get one 409 and one winner.
//!
//! Two departures from client-go, both towards fewer leaders: a leader that finds another
//! holder with a valid lease steps down at once instead of retrying until its renew deadline,
//! and losing leadership returns to candidacy instead of exiting the process (the caller stops
//! its controller first). On shutdown the leader releases the Lease (client-go's
//! `ReleaseOnCancel`) so a standby takes over within a retry period instead of a lease
//! duration. The leader also advertises its metrics-adapter endpoint in the
//! [`ENDPOINT_ANNOTATION`] annotation, which followers read to forward metric requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use super::leader_args::{LeaderElectionArgs, LeaseConfig, parse_duration};

/// Annotation on the Lease holding the leader's metrics-adapter endpoint (`https://ip:port`).
pub const ENDPOINT_ANNOTATION: &str = "tidescale.io/adapter-endpoint";

/// client-go's `JitterFactor`: a candidate waits `retry × (1 + rand[0, 1.2))` between tries.
pub const JITTER_FACTOR: f64 = 1.2;

/// Upper bound of one API call when no tighter deadline applies.
const MAX_CALL_TIMEOUT: Duration = crate::controller::target::API_TIMEOUT;

/// Lower bound of one API call, so a short retry period does not starve a busy API server.
const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Who leads, as this process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// This process holds the Lease and runs the controller and the scheduler.
    pub is_leader: bool,
    /// The identity of the current holder, when one holds it (ourselves included).
    pub holder: Option<String>,
    /// The holder's metrics-adapter endpoint, from [`ENDPOINT_ANNOTATION`].
    pub leader_endpoint: Option<String>,
}

/// The current [`Leadership`], shared by the elector (which writes) and whoever reads
/// (operator supervisor, readiness, metrics adapter). Cheap to clone; starts as a follower
/// that knows no holder.
#[derive(Debug, Clone)]
pub struct LeadershipWatch(Arc<watch::Sender<Leadership>>);

impl Default for LeadershipWatch {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Leadership::default())))
    }
}

impl LeadershipWatch {
    /// A receiver that sees every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.0.subscribe()
    }

    /// The current state.
    pub fn current(&self) -> Leadership {
        self.0.borrow().clone()
    }

    /// Replace the state; receivers wake only when it changed.
    pub fn publish(&self, leadership: Leadership) {
        self.0.send_if_modified(|current| {
            let changed = *current != leadership;
            *current = leadership;
            changed
        });
    }
}

/// What one `tryAcquireOrRenew` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Another holder's lease is valid.
    HeldByOther,
    /// The API failed or a write lost a race; try again later.
    Failed,
}

/// The Lease as last read or written, and when (locally) its record last changed.
#[derive(Debug, Clone)]
struct Observed {
    lease: Lease,
    at: Instant,
}

/// One candidate: runs client-go's acquire/renew loops against one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leadership: LeadershipWatch,
    observed: Option<Observed>,
    leading: bool,
}

impl LeaderElector {
    /// A candidate for `config`'s Lease that publishes into `leadership`.
    pub fn new(client: kube::Client, config: LeaseConfig, leadership: LeadershipWatch) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leadership,
            observed: None,
            leading: false,
        }
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        self.leading
    }

    /// Acquire, renew, and on loss acquire again, until `cancel` fires. Does not release:
    /// call [`LeaderElector::release`] once whatever the leader ran has stopped.
    pub async fn run(&mut self, cancel: &CancellationToken) {
        loop {
            if !self.acquire(cancel).await {
                return;
            }
            if !self.renew(cancel).await {
                return;
            }
        }
    }

    /// Try every jittered retry period until we hold the Lease; false when cancelled.
    async fn acquire(&mut self, cancel: &CancellationToken) -> bool {
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let attempt = self.try_acquire_or_renew(self.call_timeout()).await;
            if attempt == Attempt::Held {
                self.leading = true;
                self.publish();
                info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                return true;
            }
            self.publish();
            let wait = jittered(self.config.retry_period);
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renew every retry period; each renewal may retry until `renew_deadline`. Returns true
    /// when leadership was lost (the caller acquires again), false when cancelled while leading.
    async fn renew(&mut self, cancel: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            let deadline = Instant::now() + self.config.renew_deadline;
            let renewed = loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break false;
                }
                match self
                    .try_acquire_or_renew(self.call_timeout().min(remaining))
                    .await
                {
                    Attempt::Held => break true,
                    Attempt::HeldByOther => break false,
                    Attempt::Failed => {}
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::select! {
                    () = cancel.cancelled() => return false,
                    () = tokio::time::sleep(self.config.retry_period.min(remaining)) => {}
                }
            };
            if renewed {
                self.publish();
                continue;
            }
            self.leading = false;
            self.publish();
            warn!(lease = %self.config.name, identity = %self.config.identity, "lost leadership");
            return true;
        }
    }

    /// Give the Lease up so a standby takes over at once: holder cleared, a one-second
    /// duration, retried on conflicts for at most `renew_deadline`. No-op unless leading.
    pub async fn release(&mut self) {
        if !self.leading {
            return;
        }
        self.leading = false;
        let deadline = Instant::now() + self.config.renew_deadline;
        while let Some(remaining) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            let Some(observed) = self.observed.as_ref() else {
                break;
            };
            if holder(&observed.lease) != Some(self.config.identity.as_str()) {
                break;
            }
            let mut lease = observed.lease.clone();
            let now = MicroTime(Timestamp::now());
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            set_endpoint(&mut lease.metadata, None);
            let timeout = self.call_timeout().min(remaining);
            match with_timeout(
                timeout,
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease),
            )
            .await
            {
                Ok(written) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "released the lease");
                    self.observe(written, Instant::now());
                    break;
                }
                Err(error) if is_conflict(&error) => {
                    // Someone touched the Lease: read it again and retry if it is still ours.
                    match with_timeout(timeout, self.api.get_opt(&self.config.name)).await {
                        Ok(Some(current)) => self.observe(current, Instant::now()),
                        Ok(None) => break,
                        Err(error) => debug!(error = %error, "reading the lease to release it"),
                    }
                }
                Err(error) => {
                    warn!(lease = %self.config.name, error = %error, "releasing the lease");
                    tokio::time::sleep(self.config.retry_period.min(remaining)).await;
                }
            }
        }
        self.publish();
    }

    /// client-go's `tryAcquireOrRenew` (spec/kubernetes.md §6, steps 1–7).
    async fn try_acquire_or_renew(&mut self, timeout: Duration) -> Attempt {
        let now = Instant::now();
        let wall = MicroTime(Timestamp::now());
        let me = self.config.identity.clone();
        // 2. Fast path: still the holder of a valid lease → write over our last read.
        if let Some(observed) = self.observed.clone()
            && self.leading
            && holder(&observed.lease) == Some(me.as_str())
            && is_valid(&observed, now)
        {
            let lease = self.desired(observed.lease, &wall, true);
            match with_timeout(
                timeout,
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease),
            )
            .await
            {
                Ok(written) => {
                    self.observe(written, now);
                    return Attempt::Held;
                }
                Err(error) => debug!(error = %error, "fast renewal failed; reading the lease"),
            }
        }
        // 3. Read; create when absent.
        let current = match with_timeout(timeout, self.api.get_opt(&self.config.name)).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                let lease = self.desired(
                    Lease {
                        metadata: ObjectMeta {
                            name: Some(self.config.name.clone()),
                            namespace: Some(self.config.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: None,
                    },
                    &wall,
                    false,
                );
                return match with_timeout(timeout, self.api.create(&PostParams::default(), &lease))
                    .await
                {
                    Ok(created) => {
                        self.observe(created, now);
                        Attempt::Held
                    }
                    Err(error) => {
                        debug!(error = %error, "creating the lease");
                        Attempt::Failed
                    }
                };
            }
            Err(error) => {
                debug!(error = %error, "reading the lease");
                return Attempt::Failed;
            }
        };
        // 4. Remember when the record last changed, by our clock.
        self.observe(current.clone(), now);
        let Some(observed) = self.observed.clone() else {
            return Attempt::Failed;
        };
        // 5. Someone else holds a valid lease.
        let current_holder = holder(&current);
        if current_holder.is_some_and(|h| h != me) && is_valid(&observed, now) {
            return Attempt::HeldByOther;
        }
        // 6–7. Take it over (or renew it), guarded by the resourceVersion just read.
        let renewing = current_holder == Some(me.as_str());
        let lease = self.desired(current, &wall, renewing);
        match with_timeout(
            timeout,
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease),
        )
        .await
        {
            Ok(written) => {
                self.observe(written, now);
                Attempt::Held
            }
            Err(error) => {
                debug!(error = %error, conflict = is_conflict(&error), "writing the lease");
                Attempt::Failed
            }
        }
    }

    fn desired(&self, base: Lease, now: &MicroTime, renewing: bool) -> Lease {
        desired(&self.config, base, now, renewing)
    }

    /// Record `lease` as the latest read or write; its observation time moves only when the
    /// election record (the spec) changed.
    fn observe(&mut self, lease: Lease, now: Instant) {
        self.observed = Some(observe(self.observed.take(), lease, now));
    }

    /// Tell readers who leads, as far as we know.
    fn publish(&self) {
        // A record naming us while we do not lead is stale (we stepped down): nobody known.
        let lease = self
            .observed
            .as_ref()
            .map(|o| &o.lease)
            .filter(|l| holder(l).is_some_and(|h| self.leading || h != self.config.identity));
        self.leadership.publish(Leadership {
            is_leader: self.leading,
            holder: lease.and_then(holder).map(str::to_owned),
            leader_endpoint: lease.and_then(|l| {
                l.metadata
                    .annotations
                    .as_ref()?
                    .get(ENDPOINT_ANNOTATION)
                    .cloned()
            }),
        });
    }

    /// One API call's bound: the retry period, within [1 s, the API timeout].
    fn call_timeout(&self) -> Duration {
        self.config
            .retry_period
            .clamp(MIN_CALL_TIMEOUT, MAX_CALL_TIMEOUT)
    }
}

/// `base` with `config`'s record: `renewing` keeps its acquire time and transition count,
/// otherwise this is a takeover (a new acquire time, one more transition).
fn desired(config: &LeaseConfig, mut base: Lease, now: &MicroTime, renewing: bool) -> Lease {
    let old = base.spec.take().unwrap_or_default();
    let transitions = old.lease_transitions.unwrap_or(0);
    // A takeover of an existing Lease counts one transition; creating it counts none.
    let created = base.metadata.resource_version.is_none();
    base.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(whole_seconds(config.lease_duration)),
        acquire_time: if renewing {
            old.acquire_time.clone()
        } else {
            Some(now.clone())
        },
        renew_time: Some(now.clone()),
        lease_transitions: Some(if renewing || created {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..old
    });
    set_endpoint(&mut base.metadata, config.endpoint.as_deref());
    base
}

/// `lease` as the latest observation after `previous`: the observation time moves only when
/// the election record (the spec) changed, as client-go compares the record it last saw.
fn observe(previous: Option<Observed>, lease: Lease, now: Instant) -> Observed {
    let at = match previous {
        Some(previous) if previous.lease.spec == lease.spec => previous.at,
        _ => now,
    };
    Observed { lease, at }
}

/// The non-empty holder of `lease`.
fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// Whether the observed record is still within its `leaseDurationSeconds`, counted from when
/// we observed it (never from the holder's `renewTime`).
fn is_valid(observed: &Observed, now: Instant) -> bool {
    let seconds = observed
        .lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(0);
    let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    observed.at + duration > now
}

/// Set or clear the endpoint annotation.
fn set_endpoint(metadata: &mut ObjectMeta, endpoint: Option<&str>) {
    match endpoint {
        Some(endpoint) => {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ENDPOINT_ANNOTATION.to_owned(), endpoint.to_owned());
        }
        None => {
            if let Some(annotations) = metadata.annotations.as_mut() {
                annotations.remove(ENDPOINT_ANNOTATION);
            }
        }
    }
}

/// `leaseDurationSeconds` for `duration`: whole seconds, rounded up, at least one.
fn whole_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

/// `retry × (1 + rand[0, JITTER_FACTOR))`, client-go's `wait.Jitter`.
fn jittered(retry: Duration) -> Duration {
    retry.mul_f64(1.0 + rand::rng().random_range(0.0..JITTER_FACTOR))
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Run `call` for at most `timeout`; running out of time is an error like any other.
async fn with_timeout<T>(
    timeout: Duration,
    call: impl Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!("no answer within {timeout:?}").into(),
        )),
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
