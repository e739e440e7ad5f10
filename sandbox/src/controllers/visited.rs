//! What each Deployment and ReplicaSet step read on its last visit, so a pass skips the objects
//! whose inputs have not moved since.
//!
//! A step (a Deployment's ReplicaSets, a ReplicaSet's pods, either one's status) is a function
//! of the object, the objects it owns and — only when it says it is waiting — the clock. When
//! none of those changed version since a visit that was not waiting, visiting again would write
//! nothing. Without this, one scaled Deployment among 10,000 made every pass walk all 10,000
//! Deployments and ReplicaSets (~0.5 s of a core per pass), which the operator benchmark's
//! activations paid for on the same cores. The whole pass still runs when anything changed;
//! only the per-object work is skipped, so the outcome is the same pass by pass.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use crate::store::meta;

/// The steps whose visits are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `deployment::reconcile`.
    DeploymentSets,
    /// `replicaset::reconcile`.
    ReplicaSetPods,
    /// `replicaset::refresh_status`.
    ReplicaSetStatus,
    /// `deployment::refresh_status`.
    DeploymentStatus,
}

/// The versions each step read last, by object uid.
#[derive(Debug, Default)]
pub struct Visited {
    last: HashMap<(Step, String), u64>,
    /// This pass's visits; they replace `last` at [`Visited::finish`] (objects gone drop out).
    now: HashMap<(Step, String), u64>,
}

impl Visited {
    /// Whether `step` on `object` can be skipped: its inputs (`object` and `owned`) are at the
    /// versions of its last visit. Either way the visit is recorded for the next pass; call
    /// [`Visited::waiting`] when the step turns out to wait on the clock.
    pub fn unchanged<'a>(
        &mut self,
        step: Step,
        object: &Value,
        owned: impl IntoIterator<Item = &'a Value>,
    ) -> bool {
        let Some(uid) = meta::uid(object) else {
            return false;
        };
        let mut hasher = DefaultHasher::new();
        meta::resource_version(object).hash(&mut hasher);
        for child in owned {
            (meta::uid(child), meta::resource_version(child)).hash(&mut hasher);
        }
        let versions = hasher.finish();
        let key = (step, uid.to_owned());
        let same = self.last.get(&key) == Some(&versions);
        self.now.insert(key, versions);
        same
    }

    /// `step` on `object` waits on the clock: visit it again next pass.
    pub fn waiting(&mut self, step: Step, object: &Value) {
        if let Some(uid) = meta::uid(object) {
            self.now.remove(&(step, uid.to_owned()));
        }
    }

    /// End of a pass: its visits are what the next one compares with.
    pub fn finish(&mut self) {
        self.last = std::mem::take(&mut self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(uid: &str, version: &str) -> Value {
        json!({"metadata": {"uid": uid, "resourceVersion": version}})
    }

    #[test]
    fn a_visit_is_skipped_only_while_the_object_and_its_children_keep_their_versions() {
        let mut visited = Visited::default();
        let (d, rs) = (object("d", "1"), object("rs", "2"));
        assert!(
            !visited.unchanged(Step::DeploymentSets, &d, [&rs]),
            "first visit"
        );
        visited.finish();
        assert!(visited.unchanged(Step::DeploymentSets, &d, [&rs]));
        assert!(
            !visited.unchanged(Step::DeploymentStatus, &d, [&rs]),
            "other step"
        );
        visited.finish();
        let moved = object("rs", "3");
        assert!(
            !visited.unchanged(Step::DeploymentSets, &d, [&moved]),
            "child moved"
        );
        visited.finish();
        let extra = object("rs2", "4");
        assert!(
            !visited.unchanged(Step::DeploymentSets, &d, [&moved, &extra]),
            "new child"
        );
        visited.finish();
        assert!(visited.unchanged(Step::DeploymentSets, &d, [&moved, &extra]));
        visited.waiting(Step::DeploymentSets, &d);
        visited.finish();
        assert!(
            !visited.unchanged(Step::DeploymentSets, &d, [&moved, &extra]),
            "was waiting"
        );
        visited.finish();
        visited.finish();
        assert!(
            !visited.unchanged(Step::DeploymentSets, &d, [&moved, &extra]),
            "not seen last pass"
        );
    }
}
