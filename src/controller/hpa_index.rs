//! What reconciles need of the owned HPAs, kept from the controller's watch of them (which is
//! there anyway to reconcile the owner when its HPA changes): whether an HPA exists and its
//! `ScalingActive` condition. The reconcile an HPA change triggers then mirrors `HPAActive`
//! without reading the HPA back — on a cold start that read was ~3 GETs per object (the HPA
//! is created, then the HPA controller reports on it twice). Only the condition is kept, a
//! couple of hundred bytes per HPA.
//!
//! Unknown (before the first list, or an HPA not seen) means "ask the API server", never
//! "absent": reconcile falls back to its GET, so a stale or young index costs a request, not
//! a wrong answer. The one use of "not seen since the list" ([`HpaIndex::seems_absent`]) is
//! to create the HPA without that GET, by an apply that is not forced: should the HPA exist
//! after all with fields another manager set, the apply conflicts and the GET decides.
//!
//! Each HPA's [`shape`] is kept too (8 bytes): when the live HPA already has the shape
//! reconcile would apply, the GET and the apply are skipped — on a restart of 10,000 objects,
//! 20,000 requests. A shape that differs (another writer, server defaults) just means applying.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerSpec,
    HorizontalPodAutoscalerStatus,
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
    /// What is known of each HPA.
    live: HashMap<Key, Summary>,
    /// The map being rebuilt by a (re)list, swapped in when it completes.
    relist: Option<HashMap<Key, Summary>>,
    /// Whether a list completed: from then on, an HPA not in `live` was absent at the watch's
    /// last word.
    listed: bool,
}

/// One HPA as reconcile needs it.
#[derive(Debug)]
struct Summary {
    /// Its `ScalingActive` condition, if it reported one; boxed, so the map's slots stay
    /// small (they are sized for the largest number of HPAs ever seen).
    condition: Option<Box<HorizontalPodAutoscalerCondition>>,
    /// Its [`shape`].
    shape: u64,
}

impl HpaIndex {
    /// Apply one event of the HPA watch.
    pub fn apply(&self, event: &Event<HorizontalPodAutoscaler>) {
        let mut index = self.lock();
        match event {
            Event::Init => index.relist = Some(HashMap::new()),
            Event::InitApply(hpa) => {
                let (key, summary) = summary(hpa);
                index.relist.get_or_insert_default().insert(key, summary);
            }
            Event::InitDone => {
                if let Some(relisted) = index.relist.take() {
                    index.live = relisted;
                }
                index.listed = true;
            }
            Event::Apply(hpa) => {
                let (key, summary) = summary(hpa);
                index.live.insert(key, summary);
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
        let condition = self.lock().live.get(&key)?.condition.as_deref().cloned();
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

    /// Whether the HPA `namespace/name` is known to have `shape`.
    pub fn has_shape(&self, namespace: &str, name: &str, shape: u64) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        self.lock().live.get(&key).is_some_and(|s| s.shape == shape)
    }

    /// Whether the watch, once listed, has not seen the HPA `namespace/name` (it may exist
    /// all the same if it was created a moment ago: callers must write so that this fails
    /// safely, not overwrite).
    pub fn seems_absent(&self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        let index = self.lock();
        index.listed && !index.live.contains_key(&key)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A digest of what reconcile applies to an HPA: labels, annotations, owner references (so the
/// owning ScaledObject's uid) and spec. In memory only.
pub fn shape(metadata: &ObjectMeta, spec: Option<&HorizontalPodAutoscalerSpec>) -> u64 {
    let applied = (
        &metadata.labels,
        &metadata.annotations,
        &metadata.owner_references,
        spec,
    );
    let json = serde_json::to_vec(&applied).unwrap_or_default();
    BuildHasherDefault::<DefaultHasher>::default().hash_one(json)
}

fn summary(hpa: &HorizontalPodAutoscaler) -> (Key, Summary) {
    let key = (
        hpa.metadata.namespace.clone().unwrap_or_default(),
        hpa.metadata.name.clone().unwrap_or_default(),
    );
    let condition = hpa
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "ScalingActive"))
        .map(|c| Box::new(c.clone()));
    let shape = shape(&hpa.metadata, hpa.spec.as_ref());
    (key, Summary { condition, shape })
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
        assert!(!index.seems_absent("shop", "b"), "unknown is not absent");
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(hpa("a", None)));
        assert!(
            !index.seems_absent("shop", "b"),
            "not before the list completes"
        );
        index.apply(&Event::InitDone);
        assert!(index.seems_absent("shop", "b"));
        assert!(!index.seems_absent("shop", "a"));
        assert_eq!(active(&index, "a"), Some(None), "exists, no condition yet");
        index.apply(&Event::Apply(hpa("a", Some("False"))));
        assert_eq!(active(&index, "a"), Some(Some("False".into())));
        index.apply(&Event::Delete(hpa("a", Some("False"))));
        assert_eq!(active(&index, "a"), None);
    }

    #[test]
    fn the_shape_covers_labels_owner_and_spec_only() {
        let index = HpaIndex::default();
        let mut live = hpa("a", Some("True"));
        live.spec = Some(HorizontalPodAutoscalerSpec {
            max_replicas: 10,
            ..HorizontalPodAutoscalerSpec::default()
        });
        let applied = shape(&live.metadata, live.spec.as_ref());
        index.apply(&Event::Apply(live.clone()));
        assert!(index.has_shape("shop", "a", applied));
        assert!(!index.has_shape("shop", "b", applied), "unknown HPA");
        live.metadata.resource_version = Some("9".into());
        live.status = None;
        assert_eq!(
            shape(&live.metadata, live.spec.as_ref()),
            applied,
            "status and versions do not count"
        );
        live.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        assert_ne!(shape(&live.metadata, live.spec.as_ref()), applied);
        let mut spec = live.spec.clone().expect("spec");
        spec.max_replicas = 11;
        assert_ne!(
            shape(&ObjectMeta::default(), Some(&spec)),
            shape(&ObjectMeta::default(), live.spec.as_ref())
        );
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
