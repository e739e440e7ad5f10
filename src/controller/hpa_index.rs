//! What reconciles need of the owned HPAs, kept from the controller's watch of them (which is
//! there anyway to reconcile the owner when its HPA changes): whether an HPA exists and its
//! `ScalingActive` condition. The reconcile an HPA change triggers then mirrors `HPAActive`
//! without reading the HPA back — on a cold start that read was ~3 GETs per object (the HPA
//! is created, then the HPA controller reports on it twice). Only the condition is kept, a
//! couple of hundred bytes per HPA.
//!
//! Unknown (before the first list, or an HPA not seen) means "ask the API server", never
//! "absent": reconcile falls back to its GET, so a stale or young index costs a request, not
//! a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;

/// `(namespace, name)`.
type Key = (String, String);

/// Shared index of the watched HPAs; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HpaIndex {
    inner: Arc<Mutex<Index>>,
}

#[derive(Debug, Default)]
struct Index {
    /// HPA → its `ScalingActive` condition, if it reported one.
    live: HashMap<Key, Option<HorizontalPodAutoscalerCondition>>,
    /// The map being rebuilt by a (re)list, swapped in when it completes.
    relist: Option<HashMap<Key, Option<HorizontalPodAutoscalerCondition>>>,
}

impl HpaIndex {
    /// Apply one event of the HPA watch.
    pub fn apply(&self, event: &Event<HorizontalPodAutoscaler>) {
        let mut index = self.lock();
        match event {
            Event::Init => index.relist = Some(HashMap::new()),
            Event::InitApply(hpa) => {
                let (key, condition) = summary(hpa);
                index.relist.get_or_insert_default().insert(key, condition);
            }
            Event::InitDone => {
                if let Some(relisted) = index.relist.take() {
                    index.live = relisted;
                }
            }
            Event::Apply(hpa) => {
                let (key, condition) = summary(hpa);
                index.live.insert(key, condition);
            }
            Event::Delete(hpa) => {
                index.live.remove(&summary(hpa).0);
            }
        }
    }

    /// The HPA `namespace/name` as far as `HPAActive` needs it (name and the `ScalingActive`
    /// condition); `None` when the index does not know it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<HorizontalPodAutoscaler> {
        let key = (namespace.to_owned(), name.to_owned());
        let condition = self.lock().live.get(&key)?.clone();
        Some(HorizontalPodAutoscaler {
            metadata: ObjectMeta {
                name: Some(key.1),
                namespace: Some(key.0),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(HorizontalPodAutoscalerStatus {
                conditions: Some(condition.into_iter().collect()),
                ..HorizontalPodAutoscalerStatus::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn summary(hpa: &HorizontalPodAutoscaler) -> (Key, Option<HorizontalPodAutoscalerCondition>) {
    let key = (
        hpa.metadata.namespace.clone().unwrap_or_default(),
        hpa.metadata.name.clone().unwrap_or_default(),
    );
    let condition = hpa
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "ScalingActive"))
        .cloned();
    (key, condition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(name: &str, scaling_active: Option<&str>) -> HorizontalPodAutoscaler {
        let condition = scaling_active.map(|status| HorizontalPodAutoscalerCondition {
            type_: "ScalingActive".into(),
            status: status.into(),
            reason: Some("ScalingDisabled".into()),
            ..HorizontalPodAutoscalerCondition::default()
        });
        HorizontalPodAutoscaler {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(HorizontalPodAutoscalerStatus {
                conditions: Some(condition.into_iter().collect()),
                ..HorizontalPodAutoscalerStatus::default()
            }),
        }
    }

    fn active(index: &HpaIndex, name: &str) -> Option<Option<String>> {
        let hpa = index.get("shop", name)?;
        let conditions = hpa.status?.conditions.unwrap_or_default();
        Some(conditions.first().map(|c| c.status.clone()))
    }

    #[test]
    fn the_index_follows_the_watch_and_knows_nothing_it_did_not_see() {
        let index = HpaIndex::default();
        assert_eq!(active(&index, "a"), None, "unknown before the list");
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(hpa("a", None)));
        index.apply(&Event::InitDone);
        assert_eq!(active(&index, "a"), Some(None), "exists, no condition yet");
        index.apply(&Event::Apply(hpa("a", Some("False"))));
        assert_eq!(active(&index, "a"), Some(Some("False".into())));
        index.apply(&Event::Delete(hpa("a", Some("False"))));
        assert_eq!(active(&index, "a"), None);
    }

    #[test]
    fn a_relist_replaces_what_was_known() {
        let index = HpaIndex::default();
        index.apply(&Event::Apply(hpa("gone", None)));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(hpa("kept", Some("True"))));
        assert_eq!(
            active(&index, "gone"),
            Some(None),
            "old view until the list is in"
        );
        index.apply(&Event::InitDone);
        assert_eq!(active(&index, "gone"), None);
        assert_eq!(active(&index, "kept"), Some(Some("True".into())));
    }
}
