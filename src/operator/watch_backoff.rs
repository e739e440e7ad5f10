//! How the operator's watches retry: ScaledObjects, their owned HPAs and trigger sources (the
//! controller's inputs), the readiness cache, the scale targets' replicas, and the metrics
//! adapter's authentication ConfigMap.
//!
//! Two things made the operator blind for 30 s to a minute after an API-server restart
//! (`tests/operator_faults.rs`), and both are fixed here:
//!
//! - kube-runtime's `DefaultBackoff` copies client-go's reflector: 0.8 s doubling up to 30 s.
//!   During an outage every refused reconnect doubles the wait, and the restarted server
//!   then answers the first resumed watch with `410 Expired` (its watch cache is new), which
//!   costs one more full wait before the relist. [`WatchBackoff`] caps the wait at [`MAX`].
//! - `Controller::new` merges all its watches into one stream behind one backoff, so each
//!   watch's 410 paused every other watch in turn, and a relist of an empty collection (no
//!   object, hence no item) never reset it. [`watch`] gives each watch its own backoff and
//!   [`errors_logged`] keeps its errors out of the merged stream.
//!
//! The operator holds a handful of watches, so even at the cap their reconnect attempts (one
//! per watch every 2.5–5 s, jittered so they do not arrive together) are no load for a
//! struggling server.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher::{self, Event, watcher};
use rand::Rng;
use serde::de::DeserializeOwned;
use tracing::warn;

/// First wait after an error.
pub const MIN: Duration = Duration::from_millis(800);
/// Longest wait between attempts (before jitter, which only shortens it).
pub const MAX: Duration = Duration::from_secs(5);

/// Exponential backoff from [`MIN`] doubling to [`MAX`], each wait jittered down to half;
/// reset by the watch stream whenever an item arrives.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

/// The backoff for a new watch.
pub fn watch_backoff() -> WatchBackoff {
    WatchBackoff { next: MIN }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(wait.mul_f64(rand::rng().random_range(0.5..=1.0)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = MIN;
    }
}

/// A watch of `api` with its own [`WatchBackoff`]: after an error it waits, then resumes or
/// (after `410 Expired`) relists, independently of any other watch.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> StreamBackoff<impl Stream<Item = watcher::Result<Event<K>>> + Send, WatchBackoff>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    StreamBackoff::new(watcher(api, config), watch_backoff())
}

/// `stream` without its errors, each logged once with `watch` naming the stream: a watch that
/// is retrying (after its own backoff) must not pause the others it is merged with.
pub fn errors_logged<T>(
    stream: impl Stream<Item = watcher::Result<T>> + Send + 'static,
    watch: &'static str,
) -> impl Stream<Item = watcher::Result<T>> + Send + 'static
where
    T: Send + 'static,
{
    stream.filter_map(move |item| {
        futures::future::ready(match item {
            Ok(item) => Some(Ok(item)),
            Err(error) => {
                warn!(watch, error = %error, "watch failed; retrying");
                None
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut backoff = watch_backoff();
        let waits: Vec<Duration> = backoff.by_ref().take(8).collect();
        assert!(waits[0] >= MIN / 2 && waits[0] <= MIN);
        assert!(waits.iter().all(|w| *w <= MAX && *w >= MIN / 2));
        assert!(waits[7] >= MAX / 2, "capped, not stuck low: {waits:?}");
        backoff.reset();
        assert!(backoff.next().is_some_and(|w| w <= MIN));
    }
}
