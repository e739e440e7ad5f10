//! Which ScaledObject changes reach the controller: those that touch what a reconcile reads
//! ([`reconcile_inputs`]), not the status writes of the polls.
//!
//! Why not kube-runtime's `predicate_filter`: it keeps, per object, its name, namespace and
//! UID as three strings in a table sized for the largest list it saw (~250 bytes per object
//! at 10,000; issue #5's budget is 10 KiB per object in all). Here an object costs two
//! `u64`s: a hash of its identity and the hash of its inputs. Two objects whose identities
//! collide (one chance in ~10^11 among 10,000) only cost each other an extra reconcile: a
//! change is dropped only when its inputs hash equals the one stored, which then would have
//! to collide too. Entries go with the objects: on a delete, and on a relist for those it no
//! longer holds (kube's filter expires them after an hour instead).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};

use crate::crd::ScaledObject;
use crate::crd::names::condition;

/// The objects of `events` whose [`reconcile_inputs`] changed since the watch last showed
/// them, and the watch's errors.
pub fn changed_inputs(
    events: impl Stream<Item = Result<Event<ScaledObject>, watcher::Error>> + Send,
) -> impl Stream<Item = Result<ScaledObject, watcher::Error>> + Send {
    let mut filter = InputsFilter::default();
    events.filter_map(move |event| {
        let passed = match event {
            Ok(event) => filter.pass(event).map(Ok),
            Err(error) => Some(Err(error)),
        };
        futures::future::ready(passed)
    })
}

/// The inputs hash of each object the watch holds, by identity hash.
#[derive(Default)]
struct InputsFilter {
    seen: HashMap<u64, u64>,
    /// During a relist: what it brought so far.
    relisted: Option<HashMap<u64, u64>>,
}

impl InputsFilter {
    /// `event`'s object, when it is to be reconciled.
    fn pass(&mut self, event: Event<ScaledObject>) -> Option<ScaledObject> {
        match event {
            Event::Apply(object) => self.changed(&object).then_some(object),
            Event::InitApply(object) => {
                let changed = self.changed(&object);
                if let Some(relisted) = &mut self.relisted {
                    relisted.insert(identity(&object), reconcile_inputs(&object));
                }
                changed.then_some(object)
            }
            Event::Delete(object) => {
                self.seen.remove(&identity(&object));
                None
            }
            Event::Init => {
                self.relisted = Some(HashMap::new());
                None
            }
            Event::InitDone => {
                if let Some(relisted) = self.relisted.take() {
                    self.seen = relisted;
                }
                None
            }
        }
    }

    /// Record `object`'s inputs; whether they differ from those recorded before.
    fn changed(&mut self, object: &ScaledObject) -> bool {
        let inputs = reconcile_inputs(object);
        self.seen.insert(identity(object), inputs) != Some(inputs)
    }
}

/// Namespace, name and UID, hashed.
fn identity(object: &ScaledObject) -> u64 {
    let meta = &object.metadata;
    let mut hasher = DefaultHasher::new();
    (&meta.namespace, &meta.name, &meta.uid).hash(&mut hasher);
    hasher.finish()
}

/// What a change of a ScaledObject must touch to be reconciled: its spec (generation), labels,
/// annotations, finalizers or deletion, and of its status only the `HPAActive` condition —
/// not the rest, which the polls write (KEDA's controller filters status changes too). Each
/// status write used to cost a reconcile and a read of the HPA. `HPAActive` stays: a poll
/// writing the status it read before the reconcile mirrored the HPA drops the condition, and
/// the reconcile that follows puts it back. The HPA's own changes arrive through its watch.
pub fn reconcile_inputs(so: &ScaledObject) -> u64 {
    let meta = &so.metadata;
    let deletion = meta
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond());
    let hpa_active = so.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition::HPA_ACTIVE)
    });
    let mut hasher = DefaultHasher::new();
    (meta.generation, &meta.labels, &meta.annotations).hash(&mut hasher);
    (&meta.finalizers, deletion).hash(&mut hasher);
    hpa_active
        .map(|c| (&c.status, &c.reason, &c.message))
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ScaledObjectStatus;

    fn object(name: &str, uid: &str, generation: i64) -> ScaledObject {
        let mut so: ScaledObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": "shop", "uid": uid, "generation": generation},
            "spec": {"scaleTargetRef": {"name": "orders"}, "triggers": []}
        }))
        .expect("a ScaledObject");
        so.status = Some(ScaledObjectStatus::default());
        so
    }

    fn passes(filter: &mut InputsFilter, event: Event<ScaledObject>) -> bool {
        filter.pass(event).is_some()
    }

    #[test]
    fn only_changes_of_the_inputs_pass() {
        let mut filter = InputsFilter::default();
        assert!(
            passes(&mut filter, Event::Apply(object("a", "u1", 1))),
            "new"
        );
        let mut status_only = object("a", "u1", 1);
        status_only.status = Some(ScaledObjectStatus {
            hpa_name: Some("keda-hpa-a".into()),
            ..Default::default()
        });
        assert!(
            !passes(&mut filter, Event::Apply(status_only)),
            "a poll's status write"
        );
        assert!(
            passes(&mut filter, Event::Apply(object("a", "u1", 2))),
            "a spec change"
        );
        let mut annotated = object("a", "u1", 2);
        annotated.metadata.annotations =
            Some([("autoscaling.keda.sh/paused".into(), "true".into())].into());
        assert!(
            passes(&mut filter, Event::Apply(annotated)),
            "an annotation"
        );
        assert!(
            passes(&mut filter, Event::Apply(object("b", "u2", 2))),
            "another object"
        );
        assert!(
            passes(&mut filter, Event::Apply(object("a", "u3", 2))),
            "recreated under the same name: a new UID"
        );
    }

    #[test]
    fn a_deleted_or_vanished_object_passes_again_when_it_comes_back() {
        let mut filter = InputsFilter::default();
        assert!(passes(&mut filter, Event::Apply(object("a", "u1", 1))));
        assert!(!passes(&mut filter, Event::Delete(object("a", "u1", 1))));
        assert!(
            passes(&mut filter, Event::Apply(object("a", "u1", 1))),
            "after its delete"
        );
        assert!(passes(&mut filter, Event::Apply(object("b", "u2", 1))));
        // A relist that no longer holds `b` (deleted while the watch was down) and holds `a`
        // unchanged.
        assert!(!passes(&mut filter, Event::Init));
        assert!(
            !passes(&mut filter, Event::InitApply(object("a", "u1", 1))),
            "unchanged"
        );
        assert!(!passes(&mut filter, Event::InitDone));
        assert_eq!(filter.seen.len(), 1, "only what the relist holds is kept");
        assert!(
            passes(&mut filter, Event::Apply(object("b", "u2", 1))),
            "b is new again"
        );
    }

    #[tokio::test]
    async fn the_stream_passes_changed_objects_and_errors_in_order() {
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(object("a", "u1", 1))),
            Ok(Event::InitDone),
            Ok(Event::Apply(object("a", "u1", 1))),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Apply(object("a", "u1", 2))),
        ]);
        let passed: Vec<_> = changed_inputs(events).collect().await;
        let described: Vec<_> = passed
            .iter()
            .map(|p| match p {
                Ok(so) => format!("{:?}", so.metadata.generation),
                Err(_) => "error".to_owned(),
            })
            .collect();
        assert_eq!(described, ["Some(1)", "error", "Some(2)"]);
    }
}
