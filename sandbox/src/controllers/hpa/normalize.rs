//! Turning the metrics' proposal into the replica count to apply: stabilization windows, rate
//! limits and min/max bounds, for both the legacy path (`spec/kubernetes.md` §3.6, no
//! `spec.behavior`) and the behavior path (§3.7).
//!
//! The recommendation and scale-event histories live in memory per HPA, as in
//! kube-controller-manager: they are dropped with the HPA and lost on restart (§3.1). Slot
//! reuse follows upstream exactly (replace an entry older than every window, else append), so
//! history sizes stay bounded by the windows.

use jiff::{SignedDuration, Timestamp};

use super::conditions::Reason;
use super::spec::{Policy, Rules, SelectPolicy};

/// One recommendation kept for stabilization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// Proposed replicas.
    pub replicas: i32,
    /// When it was proposed.
    pub at: Timestamp,
}

/// One applied scale change (behavior path only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Absolute replica change.
    pub change: i32,
    /// When it happened.
    pub at: Timestamp,
}

/// Per-HPA in-memory history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Recommendations for the stabilization windows.
    pub recommendations: Vec<Recommendation>,
    /// Scale-up events for rate limits.
    pub up_events: Vec<ScaleEvent>,
    /// Scale-down events for rate limits.
    pub down_events: Vec<ScaleEvent>,
}

/// Stabilization / limit outcome, reported in conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    /// The replica count to apply.
    pub desired: i32,
    /// `AbleToScale` reason after stabilization.
    pub stabilization: Reason,
    /// `ScalingLimited` reason.
    pub limit: Reason,
    /// `ScalingLimited` status: the limits changed the stabilized value.
    pub limited: bool,
}

fn seconds(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

/// Records `(replicas, now)`, reusing the LAST slot `is_old` accepts (upstream quirk).
fn record(
    history: &mut History,
    replicas: i32,
    now: Timestamp,
    is_old: impl Fn(Timestamp) -> bool,
) {
    let entry = Recommendation { replicas, at: now };
    match history.recommendations.iter().rposition(|r| is_old(r.at)) {
        Some(i) => history.recommendations[i] = entry,
        None => history.recommendations.push(entry),
    }
}

/// The legacy path (§3.6): downscale stabilization then `max(2C, 4)` and bounds.
pub fn legacy(
    history: &mut History,
    now: Timestamp,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    window: SignedDuration,
) -> Normalized {
    let cutoff = crate::clock::before(now, window);
    let stabilized = history
        .recommendations
        .iter()
        .filter(|r| r.at >= cutoff)
        .map(|r| r.replicas)
        .fold(proposal, i32::max);
    record(history, proposal, now, |at| at < cutoff);
    let stabilization = if stabilized == proposal {
        Reason::ReadyForNewScale
    } else {
        Reason::ScaleDownStabilized
    };
    let up_limit = current.saturating_mul(2).max(4);
    let (max_allowed, max_reason) = if max > up_limit {
        (up_limit, Reason::ScaleUpLimit)
    } else {
        (max, Reason::TooManyReplicas)
    };
    let (desired, limit) = if stabilized < min {
        (min, Reason::TooFewReplicas)
    } else if stabilized > max_allowed {
        (max_allowed, max_reason)
    } else {
        (stabilized, Reason::DesiredWithinRange)
    };
    Normalized {
        desired,
        stabilization,
        limit,
        limited: desired != stabilized,
    }
}

/// Both directions' rules, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviorRules {
    /// Scale-up rules.
    pub up: Rules,
    /// Scale-down rules.
    pub down: Rules,
}

/// Step 1 of §3.7: the stabilization corridor.
fn stabilize(
    history: &mut History,
    rules: &BehaviorRules,
    now: Timestamp,
    current: i32,
    p: i32,
) -> i32 {
    let up_cutoff = crate::clock::before(now, seconds(rules.up.window_seconds));
    let down_cutoff = crate::clock::before(now, seconds(rules.down.window_seconds));
    let (mut up_rec, mut down_rec) = (p, p);
    for r in &history.recommendations {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
    }
    record(history, p, now, |at| at < up_cutoff && at < down_cutoff);
    current.max(up_rec).min(down_rec)
}

/// Σ of changes strictly inside `(now − period, now]`.
fn changed_within(events: &[ScaleEvent], now: Timestamp, period: i32) -> i32 {
    let cutoff = crate::clock::before(now, seconds(i64::from(period)));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .fold(0i32, |a, e| a.saturating_add(e.change))
}

/// The scale-up or scale-down limit of §3.7 step 2 (before clamping to C).
fn rate_limit(history: &History, rules: &Rules, now: Timestamp, current: i32, up: bool) -> i64 {
    let c = i64::from(current);
    let max_change = match rules.select {
        SelectPolicy::Disabled => return c,
        SelectPolicy::Max => true,
        SelectPolicy::Min => false,
    };
    // Scaling up, the biggest change is the largest proposal; scaling down, the smallest.
    let pick_largest = max_change == up;
    let mut result: Option<i64> = None;
    for Policy {
        kind,
        value,
        period_seconds,
    } in &rules.policies
    {
        let added = changed_within(&history.up_events, now, *period_seconds);
        let removed = changed_within(&history.down_events, now, *period_seconds);
        let start = c - i64::from(added) + i64::from(removed);
        let v = i64::from(*value);
        let proposed = match (kind.as_str(), up) {
            ("Pods", true) => start + v,
            ("Pods", false) => start - v,
            (_, true) => (start as f64 * (1.0 + v as f64 / 100.0)).ceil() as i64,
            (_, false) => (start as f64 * (1.0 - v as f64 / 100.0)) as i64,
        };
        result = Some(match result {
            None => proposed,
            Some(r) if pick_largest => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    // No policies: Go starts from MinInt32/MaxInt32, which the clamp to C then neutralises.
    result.unwrap_or(c)
}

/// The behavior path (§3.7).
pub fn with_behavior(
    history: &mut History,
    rules: &BehaviorRules,
    now: Timestamp,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let r = stabilize(history, rules, now, current, proposal);
    let stabilization = match (r == proposal, proposal >= current) {
        (true, _) => Reason::ReadyForNewScale,
        (false, true) => Reason::ScaleUpStabilized,
        (false, false) => Reason::ScaleDownStabilized,
    };
    let (desired, limit) = if r > current {
        let limit = rate_limit(history, &rules.up, now, current, true).max(i64::from(current));
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (allowed, reason) = if max > limit {
            (limit, Reason::ScaleUpLimit)
        } else {
            (max, Reason::TooManyReplicas)
        };
        if r > allowed {
            (allowed, reason)
        } else {
            (r, Reason::DesiredWithinRange)
        }
    } else if r < current {
        let limit = rate_limit(history, &rules.down, now, current, false).min(i64::from(current));
        let limit = i32::try_from(limit).unwrap_or(i32::MIN);
        let (allowed, reason) = if min < limit {
            (limit, Reason::ScaleDownLimit)
        } else {
            (min, Reason::TooFewReplicas)
        };
        if r < allowed {
            (allowed, reason)
        } else {
            (r, Reason::DesiredWithinRange)
        }
    } else {
        (r, Reason::DesiredWithinRange)
    };
    Normalized {
        desired,
        stabilization,
        limit,
        limited: desired != r,
    }
}

/// Records a successful rescale for the rate limits (behavior path only, §3.2 step 5);
/// events older than the direction's longest policy period are recycled.
pub fn record_scale_event(
    history: &mut History,
    rules: &BehaviorRules,
    now: Timestamp,
    from: i32,
    to: i32,
) {
    let (events, rules, change) = match to.cmp(&from) {
        std::cmp::Ordering::Greater => (&mut history.up_events, &rules.up, to.saturating_sub(from)),
        std::cmp::Ordering::Less => (
            &mut history.down_events,
            &rules.down,
            from.saturating_sub(to),
        ),
        std::cmp::Ordering::Equal => return,
    };
    let longest = rules
        .policies
        .iter()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0);
    let cutoff = crate::clock::before(now, seconds(i64::from(longest)));
    let event = ScaleEvent { change, at: now };
    match events.iter().position(|e| e.at < cutoff) {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}
