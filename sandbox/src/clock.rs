//! An injectable clock, so the simulated controllers can run in virtual time.
//!
//! The HPA's behaviour is dominated by time: a 15 s sync period, a 5 min downscale
//! stabilization window, per-policy rate-limit periods (`spec/kubernetes.md` §3.1, §3.6, §3.7),
//! pods that become Ready after a delay and Jobs that finish after one. Tests cannot wait minutes
//! of wall time, and wall time makes assertions flaky, so every controller reads time through a
//! [`ClockHandle`]:
//!
//! - [`ClockHandle::real`] follows the system clock and sleeps with tokio (used by
//!   `tidescale dev`);
//! - [`ClockHandle::manual`] returns a [`VirtualClock`] that only moves when a test calls
//!   [`VirtualClock::advance`]. Advancing walks through every pending deadline in order and, at
//!   each one, waits until the woken [`Ticker`]s have finished their work and asked for their
//!   next tick. A test that advances 5 minutes therefore sees exactly the 20 HPA cycles a real
//!   cluster would run, in order, and then a quiet system.
//!
//! Controllers use [`Ticker`] for their loops: it is the unit the virtual clock can observe
//! ("busy between two ticks"). Plain [`ClockHandle::sleep`] is available for one-off waits, but
//! the virtual clock cannot know when the work after such a sleep is done.
//!
//! Test recipe: spawn the ticker-driven tasks, `control.settle().await` (their first pass,
//! which runs at once, is then over), change the world, `control.advance(d).await`, assert.
//! Work the test does itself between two `advance` calls happens "between ticks", so results
//! do not depend on thread scheduling.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::oneshot;

/// Longest real time [`VirtualClock::advance`] waits for woken tickers to go idle again.
///
/// A ticker that stays busy longer is almost certainly blocked on something that itself waits
/// for virtual time; giving up keeps a broken test from hanging forever.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A source of wall time and of timers.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
    /// A future that completes once [`Clock::now`] has reached `deadline`. A virtual clock
    /// hands the woken task a [`BusyGuard`], taken at wake-up time so that no window exists in
    /// which the task is runnable but not yet counted as busy.
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, Option<BusyGuard>>;
    /// Marks the calling ticker as busy until the guard is dropped (virtual clocks only).
    fn busy(&self) -> Option<BusyGuard> {
        None
    }
}

/// A cheap, cloneable handle to the clock every controller shares.
#[derive(Clone, Debug)]
pub struct ClockHandle(Arc<dyn Clock>);

impl ClockHandle {
    /// The system clock, with tokio timers.
    pub fn real() -> Self {
        Self(Arc::new(RealClock))
    }

    /// A virtual clock starting at `start`, plus the control handle tests use to advance it.
    pub fn manual(start: Timestamp) -> (Self, VirtualClock) {
        let clock = VirtualClock::new(start);
        (Self(Arc::new(clock.clone())), clock)
    }

    /// Wraps any [`Clock`] implementation.
    pub fn from_clock(clock: Arc<dyn Clock>) -> Self {
        Self(clock)
    }

    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.0.now()
    }

    /// Completes once the clock reaches `deadline`.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        drop(self.0.sleep_until(deadline).await);
    }

    /// Completes once `duration` has elapsed on this clock.
    pub async fn sleep(&self, duration: Duration) {
        let deadline = add(self.now(), duration);
        self.sleep_until(deadline).await;
    }

    /// A periodic ticker whose first tick completes immediately.
    ///
    /// Create it *before* spawning the task that drives it: the ticker counts as busy from
    /// creation until its task waits for a tick, so a virtual clock advanced right after the
    /// spawn still waits for the task's first round of work.
    pub fn ticker(&self, period: Duration) -> Ticker {
        Ticker {
            clock: self.clone(),
            period,
            next: None,
            busy: self.0.busy(),
        }
    }
}

/// `t + d`, saturating at the largest representable timestamp.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the smallest representable timestamp.
pub fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// `t + d` for a signed duration, saturating at the representable range.
pub fn offset(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `t - d` for a signed duration, saturating at the representable range.
pub fn before(t: Timestamp, d: SignedDuration) -> Timestamp {
    offset(t, d.checked_neg().unwrap_or(SignedDuration::MAX))
}

/// Formats a timestamp the way Kubernetes serializes `metav1.Time` (RFC 3339, seconds, `Z`).
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `metav1.Time` string; `None` for anything unparseable.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// A periodic timer bound to a [`ClockHandle`], with tokio's `MissedTickBehavior::Delay`
/// semantics: a late tick pushes the following ones back instead of bursting.
#[derive(Debug)]
pub struct Ticker {
    clock: ClockHandle,
    period: Duration,
    next: Option<Timestamp>,
    busy: Option<BusyGuard>,
}

impl Ticker {
    /// Waits for the next tick and returns its time. Between two calls the ticker counts as busy
    /// for [`VirtualClock::advance`].
    pub async fn tick(&mut self) -> Timestamp {
        self.busy = None;
        let now = self.clock.now();
        let due = self.next.unwrap_or(now);
        self.busy = if due > now {
            self.clock.0.sleep_until(due).await
        } else {
            self.clock.0.busy()
        };
        let fired = self.clock.now();
        self.next = Some(add(fired.max(due), self.period));
        fired
    }
}

#[derive(Debug)]
struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, Option<BusyGuard>> {
        let wait = deadline
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            None
        })
    }
}

/// Counts busy tickers; dropping it marks the ticker idle again.
#[derive(Debug)]
pub struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Sleeper {
    deadline: Timestamp,
    wake: oneshot::Sender<BusyGuard>,
}

#[derive(Debug)]
struct VirtualState {
    now: Timestamp,
    sleepers: Vec<Sleeper>,
}

/// A clock that stands still until a test advances it.
#[derive(Clone, Debug)]
pub struct VirtualClock {
    state: Arc<Mutex<VirtualState>>,
    busy: Arc<AtomicUsize>,
}

impl VirtualClock {
    fn new(start: Timestamp) -> Self {
        Self {
            state: Arc::new(Mutex::new(VirtualState {
                now: start,
                sleepers: Vec::new(),
            })),
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VirtualState> {
        // A panic while holding this lock cannot leave the state inconsistent (every critical
        // section is a single assignment or vector edit), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.lock().now
    }

    /// Moves time forward by `duration`, stopping at every pending deadline on the way, waking
    /// its sleepers and waiting for the woken tickers to finish their work.
    pub async fn advance(&self, duration: Duration) {
        let target = add(self.now(), duration);
        loop {
            // Busy tickers have not asked for their next deadline yet: let them finish first,
            // or time would jump past deadlines they are about to register.
            self.settle().await;
            let woken = {
                let mut state = self.lock();
                state.sleepers.retain(|s| !s.wake.is_closed());
                let next = state
                    .sleepers
                    .iter()
                    .map(|s| s.deadline)
                    .filter(|d| *d <= target)
                    .min();
                let Some(next) = next else {
                    state.now = state.now.max(target);
                    break;
                };
                state.now = state.now.max(next);
                let (due, rest) = std::mem::take(&mut state.sleepers)
                    .into_iter()
                    .partition::<Vec<_>, _>(|s| s.deadline <= next);
                state.sleepers = rest;
                due
            };
            for sleeper in woken {
                // If the sleep future is gone the guard comes back in the error and is dropped.
                let _ = sleeper.wake.send(self.take_busy());
            }
        }
        self.settle().await;
    }

    /// Waits (in real time) until every woken ticker is idle again.
    pub async fn settle(&self) {
        let started = std::time::Instant::now();
        // Let tasks that were just spawned (not woken by us) get scheduled once.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        while self.busy.load(Ordering::SeqCst) > 0 && started.elapsed() < SETTLE_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::task::yield_now().await;
    }

    fn take_busy(&self) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.busy.clone())
    }

    /// Number of pending sleepers (useful to wait until background loops have started).
    pub fn pending_sleepers(&self) -> usize {
        self.lock().sleepers.len()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        VirtualClock::now(self)
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, Option<BusyGuard>> {
        let mut state = self.lock();
        if deadline <= state.now {
            drop(state);
            return Box::pin(std::future::ready(Some(self.take_busy())));
        }
        let (wake, woken) = oneshot::channel();
        state.sleepers.push(Sleeper { deadline, wake });
        // An error means the clock was dropped: treat it as "time is up".
        Box::pin(async move { woken.await.ok() })
    }

    fn busy(&self) -> Option<BusyGuard> {
        Some(self.take_busy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn clock_virtual_time_stands_still_until_advanced() {
        let (clock, control) = ClockHandle::manual(start());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(clock.now(), start());
        control.advance(Duration::from_secs(90)).await;
        assert_eq!(format_time(clock.now()), "2024-05-01T12:01:30Z");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clock_ticker_fires_once_per_period_in_virtual_time() {
        let (clock, control) = ClockHandle::manual(start());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let seen = seen.clone();
            let mut ticker = clock.ticker(Duration::from_secs(15));
            tokio::spawn(async move {
                loop {
                    let t = ticker.tick().await;
                    seen.lock()
                        .unwrap()
                        .push(t.as_second() - start().as_second());
                }
            })
        };
        control.settle().await;
        control.advance(Duration::from_secs(60)).await;
        assert_eq!(*seen.lock().unwrap(), vec![0, 15, 30, 45, 60]);
        task.abort();
    }

    #[tokio::test]
    async fn clock_sleep_completes_at_its_deadline() {
        let (clock, control) = ClockHandle::manual(start());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move {
                clock.sleep(Duration::from_secs(30)).await;
                clock.now()
            }
        });
        control.settle().await;
        assert_eq!(control.pending_sleepers(), 1);
        control.advance(Duration::from_secs(29)).await;
        assert!(!sleeper.is_finished());
        control.advance(Duration::from_secs(100)).await;
        let woke = sleeper.await.unwrap();
        assert_eq!(woke, add(start(), Duration::from_secs(30)));
    }

    #[test]
    fn clock_time_helpers_saturate_and_round_trip() {
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(sub(Timestamp::MIN, Duration::from_secs(1)), Timestamp::MIN);
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Some(start()));
        assert_eq!(parse_time("garbage"), None);
    }
}
