//! `status.lastActiveTime` without a status write per poll (design.md §4.3).
//!
//! KEDA refreshes `lastActiveTime` on every poll of an active object, so an active object costs
//! one status PATCH per `pollingInterval` — the writes that throttle KEDA from ~100 objects on
//! (`reference/performance.md` §2). tidescale keeps the time in memory, decides cooldown from
//! that, and persists it:
//! - on every transition (any other status change: Active True→False/cooldown, …), so the
//!   persisted value is exact whenever the object is persisted as not active;
//! - while active, at most once every [`write_interval`] = `max(cooldownPeriod / 4, 1 s)`.
//!
//! **The bound, and the safe direction after a restart.** While the operator runs, the last
//! poll that saw the object active is at most `write_interval` after the persisted time
//! (otherwise a later write would have happened). A restarted operator (or a re-registered
//! object) that finds the object persisted as `Active=True` therefore seeds its memory with
//! `min(persisted + write_interval, now)`: the latest time the previous process can have seen
//! activity. Cooldown then never ends earlier than KEDA's (which persists every poll) would;
//! it may end up to `write_interval` later. An object persisted as not active keeps its exact
//! persisted time.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The smallest spacing of `lastActiveTime` writes.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// How often an active object's `lastActiveTime` is persisted: `max(cooldown / 4, 1 s)`.
pub fn write_interval(cooldown: Duration) -> Duration {
    (cooldown / 4).max(MIN_WRITE_INTERVAL)
}

/// One object's last active time, as this process saw it.
#[derive(Debug, Default)]
pub struct LastActive {
    memory: Mutex<Memory>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    seeded: bool,
    time: Option<Timestamp>,
}

impl LastActive {
    /// The last active time a poll decides cooldown with: the persisted one or what this
    /// process saw, whichever is later. The first call seeds the memory from the status
    /// (see the module docs).
    pub fn effective(
        &self,
        persisted: Option<Timestamp>,
        persisted_active: bool,
        interval: Duration,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let mut memory = self.lock();
        if !memory.seeded {
            *memory = Memory {
                seeded: true,
                time: seed(persisted, persisted_active, interval, now),
            };
        }
        persisted.max(memory.time)
    }

    /// A poll found the object active at `now`.
    pub fn touch(&self, now: Timestamp) {
        let mut memory = self.lock();
        memory.seeded = true;
        memory.time = Some(now);
    }

    /// What this process remembers.
    pub fn remembered(&self) -> Option<Timestamp> {
        self.lock().time
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The memory a fresh process starts from (module docs: the safe direction).
pub fn seed(
    persisted: Option<Timestamp>,
    persisted_active: bool,
    interval: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let persisted = persisted?;
    if !persisted_active {
        return Some(persisted);
    }
    let latest = SignedDuration::try_from(interval)
        .ok()
        .and_then(|d| persisted.checked_add(d).ok())
        .unwrap_or(persisted);
    Some(latest.min(now).max(persisted))
}

/// The `lastActiveTime` to put in the status this poll: the remembered time when the status
/// changes anyway (`transition`), when nothing is persisted yet, or when the persisted one is
/// at least `interval` old; else the persisted one, so an unchanged status is not written.
pub fn to_write(
    persisted: Option<Timestamp>,
    remembered: Option<Timestamp>,
    transition: bool,
    interval: Duration,
) -> Option<Timestamp> {
    match (persisted, remembered) {
        (_, None) => persisted,
        (None, Some(remembered)) => Some(remembered),
        (Some(persisted), Some(remembered)) if remembered <= persisted => Some(persisted),
        (Some(persisted), Some(remembered)) => {
            let age = remembered.duration_since(persisted);
            let due = SignedDuration::try_from(interval).is_ok_and(|i| age >= i);
            Some(if transition || due {
                remembered
            } else {
                persisted
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    const QUARTER: Duration = Duration::from_secs(75);

    #[test]
    fn the_interval_is_a_quarter_of_the_cooldown_and_at_least_a_second() {
        assert_eq!(write_interval(Duration::from_secs(300)), QUARTER);
        assert_eq!(
            write_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(write_interval(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn an_active_object_is_written_once_per_interval() {
        let persisted = Some(at(0));
        for second in [1, 30, 74] {
            assert_eq!(
                to_write(persisted, Some(at(second)), false, QUARTER),
                persisted
            );
        }
        assert_eq!(
            to_write(persisted, Some(at(75)), false, QUARTER),
            Some(at(75))
        );
    }

    #[test]
    fn transitions_and_first_activations_write_the_remembered_time() {
        assert_eq!(
            to_write(Some(at(0)), Some(at(10)), true, QUARTER),
            Some(at(10))
        );
        assert_eq!(to_write(None, Some(at(10)), false, QUARTER), Some(at(10)));
        assert_eq!(to_write(Some(at(5)), None, true, QUARTER), Some(at(5)));
        assert_eq!(
            to_write(Some(at(10)), Some(at(5)), true, QUARTER),
            Some(at(10))
        );
    }

    #[test]
    fn a_restart_never_shortens_the_cooldown() {
        // Persisted as active: the previous process may have seen activity up to a quarter later.
        assert_eq!(seed(Some(at(0)), true, QUARTER, at(500)), Some(at(75)));
        assert_eq!(seed(Some(at(0)), true, QUARTER, at(20)), Some(at(20)));
        // Persisted as inactive: the transition wrote the exact time.
        assert_eq!(seed(Some(at(0)), false, QUARTER, at(500)), Some(at(0)));
        assert_eq!(seed(None, true, QUARTER, at(500)), None);
    }

    #[test]
    fn memory_is_seeded_once_then_follows_the_polls() {
        let last = LastActive::default();
        assert_eq!(
            last.effective(Some(at(0)), true, QUARTER, at(500)),
            Some(at(75))
        );
        last.touch(at(501));
        assert_eq!(
            last.effective(Some(at(0)), true, QUARTER, at(502)),
            Some(at(501))
        );
        assert_eq!(last.remembered(), Some(at(501)));
        let fresh = LastActive::default();
        assert_eq!(fresh.effective(None, false, QUARTER, at(1)), None);
    }
}
