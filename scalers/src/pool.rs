//! Shared backend clients (design.md §4.2): one client per endpoint and credentials, shared by
//! every trigger that names it, with per-endpoint backoff so a dead backend sees no reconnect
//! storm.
//!
//! [`Pool`] is the generic part: a map from an endpoint key to a reference-counted client. A
//! scaler [`Pool::acquire`]s a [`Shared`] handle when it is built and releases it in
//! `Scaler::close` (or, as a safety net, when the handle is dropped); the client is dropped —
//! closing its connections — when the last share goes. [`Backoff`] is the per-endpoint retry
//! gate every client kind embeds.
//!
//! Client kinds live in submodules: [`http`] (a reqwest client, i.e. an HTTP connection pool,
//! per host and TLS settings) and `amqp` (one AMQP connection per URI, with reused channels).
//! Another client kind (Kafka, say) only needs a key type, a client type and a `static`
//! [`Pool`] of them.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "rabbitmq")]
pub mod amqp;
pub mod http;

/// First wait after a failure; doubled per consecutive failure up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest wait between attempts on a failing endpoint.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Per-endpoint exponential backoff: after a failure, attempts fail fast until the wait ends.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// `Ok` when an attempt may go ahead, else the time left before the next one may.
    pub fn check(&self) -> Result<(), Duration> {
        match self.retry_at {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Err(left),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Record a failed attempt and push the next one out (500 ms, 1 s, 2 s, … 30 s).
    pub fn failure(&mut self) {
        let wait = BACKOFF_BASE
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(Instant::now() + wait);
    }

    /// Record a success: the next failure starts from the base wait again.
    pub fn success(&mut self) {
        *self = Self::default();
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A timeout of zero means 300 ms, as KEDA's HTTP client builder does for timeouts ≤ 0.
pub const ZERO_TIMEOUT_FALLBACK: Duration = Duration::from_millis(300);

/// The timeout to apply for a configured `timeout`: zero becomes [`ZERO_TIMEOUT_FALLBACK`].
pub fn effective_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        ZERO_TIMEOUT_FALLBACK
    } else {
        timeout
    }
}

/// Lock a std mutex, ignoring poisoning: pool state stays consistent because no code path
/// panics while holding these locks, and a poisoned pool must not take every scaler down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Slot<C> {
    client: Arc<C>,
    shares: usize,
}

/// Reference-counted clients keyed by endpoint (and credentials, and TLS settings), plus the
/// backoff of endpoints that are failing.
///
/// Backoff lives beside the clients rather than in them: a scaler whose construction fails
/// drops its share (and so the client), and KEDA rebuilds failing scalers, so a backoff kept
/// in the client would be forgotten exactly when it matters.
pub struct Pool<K, C> {
    slots: Mutex<HashMap<K, Slot<C>>>,
    failing: Mutex<HashMap<K, Backoff>>,
    on_empty: Option<fn(Arc<C>)>,
}

impl<K, C> Default for Pool<K, C> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            on_empty: None,
        }
    }
}

impl<K, C> fmt::Debug for Pool<K, C> {
    // Keys may embed credentials: show only the count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("clients", &lock(&self.slots).len())
            .finish()
    }
}

/// Counts for tests and telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Distinct endpoints with a live client.
    pub clients: usize,
    /// Shares held by scalers, summed over endpoints.
    pub shares: usize,
    /// Endpoints currently in backoff after failures.
    pub failing: usize,
}

impl<K: Eq + Hash + Clone, C> Pool<K, C> {
    /// An empty pool (usually a `static` behind a `LazyLock`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A pool that calls `on_empty` with a client when its last share is released, so that
    /// connections close at `Scaler::close` even while released handles are still alive.
    pub fn with_on_empty(on_empty: fn(Arc<C>)) -> Self {
        Self {
            on_empty: Some(on_empty),
            ..Self::default()
        }
    }

    /// Take a share of the client for `key`, creating it with `make` when there is none.
    ///
    /// `make` runs under the pool lock, so it must not block: clients connect lazily.
    pub fn acquire<E>(
        self: &Arc<Self>,
        key: &K,
        make: impl FnOnce() -> Result<C, E>,
    ) -> Result<Shared<K, C>, E> {
        let mut slots = lock(&self.slots);
        let client = match slots.get_mut(key) {
            Some(slot) => {
                slot.shares += 1;
                Arc::clone(&slot.client)
            }
            None => {
                let client = Arc::new(make()?);
                slots.insert(
                    key.clone(),
                    Slot {
                        client: Arc::clone(&client),
                        shares: 1,
                    },
                );
                client
            }
        };
        Ok(Shared {
            pool: Arc::clone(self),
            key: key.clone(),
            client,
            released: AtomicBool::new(false),
        })
    }

    fn release(&self, key: &K) {
        let emptied = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(key) {
                Some(slot) if slot.shares > 1 => {
                    slot.shares -= 1;
                    None
                }
                Some(_) => slots.remove(key),
                None => None,
            }
        };
        // Outside the lock: the hook may take other locks or spawn.
        if let (Some(slot), Some(on_empty)) = (emptied, self.on_empty) {
            on_empty(slot.client);
        }
    }

    /// `Ok` when an attempt on `key` may go ahead, else the time left in its backoff.
    pub fn check_backoff(&self, key: &K) -> Result<(), Duration> {
        lock(&self.failing).get(key).map_or(Ok(()), Backoff::check)
    }

    /// Record the outcome of an attempt on `key`: a success forgets its backoff, a failure
    /// extends it.
    pub fn record(&self, key: &K, success: bool) {
        let mut failing = lock(&self.failing);
        if success {
            failing.remove(key);
        } else {
            failing.entry(key.clone()).or_default().failure();
        }
    }

    /// Current counts.
    pub fn stats(&self) -> PoolStats {
        let slots = lock(&self.slots);
        PoolStats {
            clients: slots.len(),
            shares: slots.values().map(|s| s.shares).sum(),
            failing: lock(&self.failing).len(),
        }
    }

    /// Every live client, for aggregate counters (e.g. open AMQP connections).
    pub fn clients(&self) -> Vec<Arc<C>> {
        lock(&self.slots)
            .values()
            .map(|s| Arc::clone(&s.client))
            .collect()
    }
}

/// One scaler's share of a pooled client. Released once, by [`Shared::release`] or on drop.
pub struct Shared<K: Eq + Hash + Clone, C> {
    pool: Arc<Pool<K, C>>,
    key: K,
    client: Arc<C>,
    released: AtomicBool,
}

impl<K: Eq + Hash + Clone, C> Shared<K, C> {
    /// The pooled client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// Give the share back; the client is dropped when no share is left. Idempotent.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.pool.release(&self.key);
        }
    }
}

impl<K: Eq + Hash + Clone, C> Drop for Shared<K, C> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<K: Eq + Hash + Clone, C> fmt::Debug for Shared<K, C> {
    // The key may embed credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

/// Mask `user:password@` in URLs and error texts, as KEDA does (`([^ /:]+):([^/:]+)@`).
pub fn mask_userinfo(text: &str) -> String {
    static USERINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"([^ /:]+):([^/:]+)@").expect("static regex")
    });
    USERINFO.replace_all(text, "user:password@").into_owned()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn shares_of_one_key_use_one_client_until_the_last_release() {
        let pool: Arc<Pool<&str, u32>> = Arc::new(Pool::new());
        let mut made = 0;
        let mut make = || {
            made += 1;
            Ok::<_, ()>(7)
        };
        let a = pool.acquire(&"k", &mut make).expect("a");
        let b = pool.acquire(&"k", &mut make).expect("b");
        let c = pool.acquire(&"other", &mut make).expect("c");
        assert_eq!(
            pool.stats(),
            PoolStats {
                clients: 2,
                shares: 3,
                failing: 0
            }
        );
        a.release();
        a.release();
        assert_eq!(
            pool.stats(),
            PoolStats {
                clients: 2,
                shares: 2,
                failing: 0
            }
        );
        drop(b);
        drop(c);
        assert_eq!(pool.stats(), PoolStats::default());
        assert_eq!(made, 2);
    }

    #[test]
    fn a_failed_make_leaves_no_slot() {
        let pool: Arc<Pool<&str, u32>> = Arc::new(Pool::new());
        assert!(pool.acquire(&"k", || Err::<u32, _>("boom")).is_err());
        assert_eq!(pool.stats(), PoolStats::default());
    }

    #[test]
    fn endpoint_backoff_outlives_its_clients() {
        let pool: Arc<Pool<&str, u32>> = Arc::new(Pool::new());
        drop(pool.acquire(&"k", || Ok::<_, ()>(1)).expect("share"));
        pool.record(&"k", false);
        assert!(pool.check_backoff(&"k").is_err());
        assert!(pool.check_backoff(&"other").is_ok());
        assert_eq!(pool.stats().failing, 1);
        pool.record(&"k", true);
        assert!(pool.check_backoff(&"k").is_ok());
        assert_eq!(pool.stats(), PoolStats::default());
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::default();
        assert!(b.check().is_ok());
        b.failure();
        let first = b.check().expect_err("waiting");
        assert!(first <= BACKOFF_BASE);
        b.failure();
        assert!(b.check().expect_err("waiting") > BACKOFF_BASE);
        for _ in 0..40 {
            b.failure();
        }
        assert!(b.check().expect_err("waiting") <= BACKOFF_MAX);
        b.success();
        assert!(b.check().is_ok());
        assert_eq!(b.failures(), 0);
    }

    #[rstest]
    #[case::url("http://guest:secret@h:15672/api", "http://user:password@h:15672/api")]
    #[case::in_sentence(
        "error from amqp://u:p@h/%2f, retry",
        "error from amqp://user:password@h/%2f, retry"
    )]
    #[case::no_userinfo("http://h:1/x", "http://h:1/x")]
    fn userinfo_is_masked(#[case] text: &str, #[case] expected: &str) {
        assert_eq!(mask_userinfo(text), expected);
    }
}
