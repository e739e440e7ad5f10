//! Pure lag arithmetic of spec/scalers.md §3.4 steps 3–6: per-partition lag with the invalid-offset
//! and persistent-lag rules, the totals, and the replica cap. No I/O, so every rule has a table
//! test here; the client only gathers offsets.

use std::collections::HashMap;

/// `offsetResetPolicy`: what an invalid (never committed) offset counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetResetPolicy {
    /// Lag 1 per partition, so a fresh group still wakes the workload (KEDA's default).
    #[default]
    Latest,
    /// The whole high watermark counts as lag.
    Earliest,
}

/// The knobs of the lag computation, taken from the parsed trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagRules {
    /// `lagThreshold` (> 0, checked at parse).
    pub lag_threshold: i64,
    /// `offsetResetPolicy`.
    pub offset_reset_policy: OffsetResetPolicy,
    /// `allowIdleConsumers`.
    pub allow_idle_consumers: bool,
    /// `excludePersistentLag`.
    pub exclude_persistent_lag: bool,
    /// `scaleToZeroOnInvalidOffset`.
    pub scale_to_zero_on_invalid_offset: bool,
    /// `limitToPartitionsWithLag`.
    pub limit_to_partitions_with_lag: bool,
    /// `ensureEvenDistributionOfPartitions`.
    pub ensure_even_distribution: bool,
}

/// Offsets of one partition as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Topic name.
    pub topic: String,
    /// Partition id.
    pub partition: i32,
    /// Committed offset of the group; `-1` when nothing was committed.
    pub committed: i64,
    /// High watermark; `None` when the partition was missing from the watermark reply.
    pub high_watermark: Option<i64>,
}

/// The outcome of one poll before it becomes a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagTotals {
    /// The metric value: total lag after persistent-lag exclusion and the replica cap.
    pub metric: i64,
    /// Total lag including persistent lag, before the cap: what activation compares.
    pub with_persistent: i64,
}

/// The committed offsets seen on the previous poll, per (topic, partition); only consulted with
/// `excludePersistentLag`. Lives as long as the scaler, as in KEDA.
pub type PreviousOffsets = HashMap<(String, i32), i64>;

/// Lag of one partition: `(lag, lag_with_persistent)`.
fn partition_lag(
    p: &PartitionOffsets,
    rules: &LagRules,
    previous: &mut PreviousOffsets,
) -> (i64, i64) {
    let Some(hw) = p.high_watermark else {
        // A partition absent from the watermark reply counts as no lag (spec §3.4.3).
        return (0, 0);
    };
    if p.committed < 0 {
        let lag = match (
            rules.offset_reset_policy,
            rules.scale_to_zero_on_invalid_offset,
        ) {
            (_, true) => 0,
            (OffsetResetPolicy::Latest, false) => 1,
            (OffsetResetPolicy::Earliest, false) => hw,
        };
        return (lag, lag);
    }
    // Not clamped: a committed offset ahead of the watermark yields negative lag, as in KEDA.
    let lag = hw.saturating_sub(p.committed);
    if rules.exclude_persistent_lag {
        let key = (p.topic.clone(), p.partition);
        match previous.insert(key, p.committed) {
            Some(prev) if prev == p.committed => return (0, lag),
            _ => return (lag, lag),
        }
    }
    (lag, lag)
}

/// Totals over all evaluated partitions, then the replica cap of spec §3.4.5.
pub fn total_lag(
    partitions: &[PartitionOffsets],
    rules: &LagRules,
    previous: &mut PreviousOffsets,
) -> LagTotals {
    let mut total: i64 = 0;
    let mut with_persistent: i64 = 0;
    let mut lagging: i64 = 0;
    for p in partitions {
        let (lag, lag_p) = partition_lag(p, rules, previous);
        total = total.saturating_add(lag);
        with_persistent = with_persistent.saturating_add(lag_p);
        if lag > 0 {
            lagging += 1;
        }
    }
    let evaluated = i64::try_from(partitions.len()).unwrap_or(i64::MAX);
    let metric = cap(total, evaluated, lagging, rules);
    LagTotals {
        metric,
        with_persistent,
    }
}

/// The replica cap: with AverageValue the HPA never asks for more replicas than partitions
/// (or lagging partitions) unless idle consumers are allowed.
fn cap(total: i64, evaluated: i64, lagging: i64, rules: &LagRules) -> i64 {
    let applies = !rules.allow_idle_consumers
        || rules.limit_to_partitions_with_lag
        || rules.ensure_even_distribution;
    if !applies {
        return total;
    }
    let bound = if rules.limit_to_partitions_with_lag {
        lagging
    } else {
        evaluated
    };
    let threshold = rules.lag_threshold.max(1);
    let mut total = total;
    if rules.ensure_even_distribution {
        total = even_distribution_lag(total, evaluated, threshold);
    }
    if total / threshold > bound {
        total = bound.saturating_mul(threshold);
    }
    total
}

/// `f × threshold` where `f` is the smallest divisor of `partitions` whose share covers `total`
/// (or `partitions` itself), so each replica gets the same number of partitions.
fn even_distribution_lag(total: i64, partitions: i64, threshold: i64) -> i64 {
    let factor = (1..=partitions)
        .filter(|f| partitions % f == 0)
        .find(|f| f.saturating_mul(threshold) >= total)
        .unwrap_or(partitions);
    factor.saturating_mul(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn rules() -> LagRules {
        LagRules {
            lag_threshold: 10,
            offset_reset_policy: OffsetResetPolicy::Latest,
            allow_idle_consumers: false,
            exclude_persistent_lag: false,
            scale_to_zero_on_invalid_offset: false,
            limit_to_partitions_with_lag: false,
            ensure_even_distribution: false,
        }
    }

    fn part(partition: i32, committed: i64, hw: i64) -> PartitionOffsets {
        PartitionOffsets {
            topic: "t".into(),
            partition,
            committed,
            high_watermark: Some(hw),
        }
    }

    #[rstest]
    #[case::latest_counts_one(OffsetResetPolicy::Latest, false, 1)]
    #[case::latest_scale_to_zero(OffsetResetPolicy::Latest, true, 0)]
    #[case::earliest_counts_watermark(OffsetResetPolicy::Earliest, false, 7)]
    #[case::earliest_scale_to_zero(OffsetResetPolicy::Earliest, true, 0)]
    fn invalid_offset_follows_policy(
        #[case] policy: OffsetResetPolicy,
        #[case] to_zero: bool,
        #[case] want: i64,
    ) {
        let r = LagRules {
            offset_reset_policy: policy,
            scale_to_zero_on_invalid_offset: to_zero,
            ..rules()
        };
        let got = total_lag(&[part(0, -1, 7)], &r, &mut PreviousOffsets::new());
        assert_eq!(
            got,
            LagTotals {
                metric: want,
                with_persistent: want
            }
        );
    }

    #[test]
    fn missing_watermark_counts_as_no_lag() {
        let p = PartitionOffsets {
            topic: "t".into(),
            partition: 0,
            committed: 3,
            high_watermark: None,
        };
        let got = total_lag(&[p], &rules(), &mut PreviousOffsets::new());
        assert_eq!(
            got,
            LagTotals {
                metric: 0,
                with_persistent: 0
            }
        );
    }

    #[test]
    fn negative_lag_is_not_clamped() {
        let got = total_lag(&[part(0, 9, 5)], &rules(), &mut PreviousOffsets::new());
        assert_eq!(got.metric, -4);
    }

    #[test]
    fn persistent_lag_is_excluded_from_metric_but_not_activation() {
        let r = LagRules {
            exclude_persistent_lag: true,
            ..rules()
        };
        let mut prev = PreviousOffsets::new();
        let first = total_lag(&[part(0, 2, 7), part(1, 0, 4)], &r, &mut prev);
        assert_eq!(
            first,
            LagTotals {
                metric: 9,
                with_persistent: 9
            }
        );
        // Partition 0 moved, partition 1 did not.
        let second = total_lag(&[part(0, 3, 7), part(1, 0, 4)], &r, &mut prev);
        assert_eq!(
            second,
            LagTotals {
                metric: 4,
                with_persistent: 8
            }
        );
    }

    #[rstest]
    #[case::capped_at_partitions(false, false, 3, 1000, 30)]
    #[case::idle_allowed_uncapped(true, false, 3, 1000, 1000)]
    #[case::under_cap_untouched(false, false, 3, 25, 25)]
    #[case::limited_to_lagging(true, true, 3, 1000, 10)]
    fn cap_bounds_by_partitions(
        #[case] idle: bool,
        #[case] limit: bool,
        #[case] partitions: i32,
        #[case] lag_on_first: i64,
        #[case] want: i64,
    ) {
        let r = LagRules {
            allow_idle_consumers: idle,
            limit_to_partitions_with_lag: limit,
            ..rules()
        };
        let mut parts: Vec<_> = (0..partitions).map(|i| part(i, 5, 5)).collect();
        parts[0] = part(0, 0, lag_on_first);
        let got = total_lag(&parts, &r, &mut PreviousOffsets::new());
        assert_eq!(got.metric, want);
        assert_eq!(got.with_persistent, lag_on_first);
    }

    #[rstest]
    #[case::ten(10, 10)]
    #[case::twenty(20, 20)]
    #[case::forty(40, 40)]
    #[case::fifty(50, 50)]
    #[case::ninety_nine(99, 100)]
    #[case::hundred(100, 100)]
    #[case::hundred_one(101, 200)]
    #[case::thirty_one(31, 40)]
    fn even_distribution_matches_spec_examples(#[case] total: i64, #[case] want: i64) {
        assert_eq!(even_distribution_lag(total, 100, 10), want);
    }
}
