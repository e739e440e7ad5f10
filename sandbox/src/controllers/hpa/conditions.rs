//! HPA status conditions with kube-controller-manager's exact reasons and messages
//! (`spec/kubernetes.md` §3.2, §3.5, §3.6, §3.7, §3.8).
//!
//! Conditions are kept in a list updated in place: a new type is appended in first-set order
//! and `lastTransitionTime` only moves when the status flips, like upstream `setCondition`.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::clock::{format_time, parse_time};

/// The three HPA condition types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// Whether the target's scale can be read and written.
    AbleToScale,
    /// Whether metrics give a replica count.
    ScalingActive,
    /// Whether bounds or rate limits changed the recommendation.
    ScalingLimited,
}

impl ConditionType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AbleToScale => "AbleToScale",
            Self::ScalingActive => "ScalingActive",
            Self::ScalingLimited => "ScalingLimited",
        }
    }
}

/// Reasons with a fixed message (reasons with variable messages are set with [`Conditions::set`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// AbleToScale True after reading the scale.
    SucceededGetScale,
    /// AbleToScale True, recommendation unchanged by stabilization.
    ReadyForNewScale,
    /// AbleToScale True, the up corridor held the recommendation.
    ScaleUpStabilized,
    /// AbleToScale True, the down window held the recommendation.
    ScaleDownStabilized,
    /// ScalingActive False at zero replicas.
    ScalingDisabled,
    /// ScalingLimited by `maxReplicas`.
    TooManyReplicas,
    /// ScalingLimited by `minReplicas`.
    TooFewReplicas,
    /// ScalingLimited by the scale-up rate.
    ScaleUpLimit,
    /// ScalingLimited by the scale-down rate.
    ScaleDownLimit,
    /// ScalingLimited False.
    DesiredWithinRange,
}

impl Reason {
    /// The reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SucceededGetScale => "SucceededGetScale",
            Self::ReadyForNewScale => "ReadyForNewScale",
            Self::ScaleUpStabilized => "ScaleUpStabilized",
            Self::ScaleDownStabilized => "ScaleDownStabilized",
            Self::ScalingDisabled => "ScalingDisabled",
            Self::TooManyReplicas => "TooManyReplicas",
            Self::TooFewReplicas => "TooFewReplicas",
            Self::ScaleUpLimit => "ScaleUpLimit",
            Self::ScaleDownLimit => "ScaleDownLimit",
            Self::DesiredWithinRange => "DesiredWithinRange",
        }
    }

    /// Upstream's message for this reason.
    pub fn message(self) -> &'static str {
        match self {
            Self::SucceededGetScale => {
                "the HPA controller was able to get the target's current scale"
            }
            Self::ReadyForNewScale => "recommended size matches current size",
            Self::ScaleUpStabilized => {
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
            }
            Self::ScaleDownStabilized => {
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            }
            Self::ScalingDisabled => {
                "scaling is disabled since the replica count of the target is zero"
            }
            Self::TooManyReplicas => {
                "the desired replica count is more than the maximum replica count"
            }
            Self::TooFewReplicas => {
                "the desired replica count is less than the minimum replica count"
            }
            Self::ScaleUpLimit => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            Self::ScaleDownLimit => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            Self::DesiredWithinRange => "the desired count is within the acceptable range",
        }
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Condition type (wire name).
    pub kind: String,
    /// `True` / `False`.
    pub status: bool,
    /// Last time `status` changed.
    pub last_transition: Option<Timestamp>,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// The ordered condition list of one HPA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    /// Reads `status.conditions` (unknown entries are kept, garbage entries dropped).
    pub fn from_json(conditions: Option<&Value>) -> Self {
        let list = conditions
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        Self(
            list.iter()
                .filter_map(|c| {
                    Some(Condition {
                        kind: c.get("type")?.as_str()?.to_owned(),
                        status: c.get("status")?.as_str()? == "True",
                        last_transition: c
                            .get("lastTransitionTime")
                            .and_then(Value::as_str)
                            .and_then(parse_time),
                        reason: c
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        message: c
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    })
                })
                .collect(),
        )
    }

    /// Sets one condition in place (upstream `setConditionInList`).
    pub fn set(
        &mut self,
        kind: ConditionType,
        status: bool,
        reason: &str,
        message: String,
        now: Timestamp,
    ) {
        let idx = match self.0.iter().position(|c| c.kind == kind.as_str()) {
            Some(i) => i,
            None => {
                self.0.push(Condition {
                    kind: kind.as_str().to_owned(),
                    status: !status,
                    last_transition: None,
                    reason: String::new(),
                    message: String::new(),
                });
                self.0.len() - 1
            }
        };
        let c = &mut self.0[idx];
        if c.status != status || c.last_transition.is_none() {
            c.last_transition = Some(now);
        }
        c.status = status;
        c.reason = reason.to_owned();
        c.message = message;
    }

    /// Sets a fixed-message reason.
    pub fn set_reason(
        &mut self,
        kind: ConditionType,
        status: bool,
        reason: Reason,
        now: Timestamp,
    ) {
        self.set(
            kind,
            status,
            reason.as_str(),
            reason.message().to_owned(),
            now,
        );
    }

    /// Looks a condition up by type.
    pub fn get(&self, kind: ConditionType) -> Option<&Condition> {
        self.0.iter().find(|c| c.kind == kind.as_str())
    }

    /// The JSON list for `status.conditions`.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|c| {
                    json!({
                        "type": c.kind,
                        "status": if c.status { "True" } else { "False" },
                        "lastTransitionTime": c.last_transition.map(format_time),
                        "reason": c.reason,
                        "message": c.message,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_conditions_keep_transition_time_until_status_flips() {
        let t0: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let t1: Timestamp = "2024-05-01T12:00:15Z".parse().unwrap();
        let mut c = Conditions::default();
        c.set_reason(
            ConditionType::AbleToScale,
            true,
            Reason::SucceededGetScale,
            t0,
        );
        c.set_reason(
            ConditionType::ScalingLimited,
            false,
            Reason::DesiredWithinRange,
            t0,
        );
        c.set_reason(
            ConditionType::AbleToScale,
            true,
            Reason::ReadyForNewScale,
            t1,
        );
        c.set_reason(
            ConditionType::ScalingLimited,
            true,
            Reason::ScaleUpLimit,
            t1,
        );
        let able = c.get(ConditionType::AbleToScale).unwrap();
        assert_eq!(
            (able.last_transition, able.reason.as_str()),
            (Some(t0), "ReadyForNewScale")
        );
        assert_eq!(
            c.get(ConditionType::ScalingLimited)
                .unwrap()
                .last_transition,
            Some(t1)
        );
        let round_trip = Conditions::from_json(Some(&c.to_json()));
        assert_eq!(round_trip, c);
        assert_eq!(c.0[0].kind, "AbleToScale");
    }
}
