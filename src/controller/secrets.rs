//! Which ScaledObjects read which Secrets, TriggerAuthentications and
//! ClusterTriggerAuthentications (design.md §4 item 5).
//!
//! KEDA freezes auth params when it builds a scaler: a rotated Secret is only picked up after an
//! error, a spec change or a restart (`reference/keda.md` §2.8, KEDA #563/#7906). tidescale
//! watches those objects instead. Reconcile records here what each object's triggers were built
//! from; the controller's watches map a changed Secret (or TriggerAuthentication) to the objects
//! that read it and mark them *stale*, so their next reconcile resolves the inputs again. Only
//! when the resolved values actually differ are that object's scalers rebuilt — nothing else is
//! touched.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};

use crate::crd::{ClusterTriggerAuthentication, ScaledObject, TriggerAuthentication};
use crate::operator::OperatorArgs;
use crate::operator::watch_backoff::{errors_logged, watch};
use crate::scaling::scheduler::ObjectKey;

/// Something a ScaledObject's triggers were resolved from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A Secret: namespace and name.
    Secret(String, String),
    /// A TriggerAuthentication: namespace and name.
    TriggerAuthentication(String, String),
    /// A ClusterTriggerAuthentication: name.
    ClusterTriggerAuthentication(String),
}

/// The index: each object's sources, and the objects whose sources changed since their last
/// reconcile.
#[derive(Debug, Default)]
pub struct SourceIndex {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_object: HashMap<ObjectKey, BTreeSet<Source>>,
    users: HashMap<Source, HashSet<ObjectKey>>,
    stale: HashSet<ObjectKey>,
}

impl SourceIndex {
    /// Record that `object`'s triggers are now built from `sources` (replacing what it read
    /// before).
    pub fn record(&self, object: &ObjectKey, sources: BTreeSet<Source>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.drop_object(object);
        for source in &sources {
            inner
                .users
                .entry(source.clone())
                .or_default()
                .insert(object.clone());
        }
        // Most objects read no Secret: they cost nothing here.
        if !sources.is_empty() {
            inner.by_object.insert(object.clone(), sources);
        }
    }

    /// Forget `object` (deleted or paused).
    pub fn forget(&self, object: &ObjectKey) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.drop_object(object);
            inner.stale.remove(object);
        }
    }

    /// `source` changed: mark the objects that read it stale and return them, for the
    /// controller to reconcile.
    pub fn changed(&self, source: &Source) -> Vec<ObjectRef<ScaledObject>> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let users: Vec<ObjectKey> = inner
            .users
            .get(source)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        inner.stale.extend(users.iter().cloned());
        users
            .into_iter()
            .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
            .collect()
    }

    /// Whether `object`'s sources changed since it was last resolved; clears the mark.
    pub fn take_stale(&self, object: &ObjectKey) -> bool {
        self.inner
            .lock()
            .map(|mut inner| inner.stale.remove(object))
            .unwrap_or(false)
    }

    /// Mark `object` stale again (its re-resolution failed and must be retried).
    pub fn mark_stale(&self, object: &ObjectKey) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.stale.insert(object.clone());
        }
    }
}

/// Add the watches of Secrets, TriggerAuthentications and ClusterTriggerAuthentications to
/// `controller`, each change mapped through `index` to the ScaledObjects that read the object.
/// Within `WATCH_NAMESPACE` when set (like the ScaledObjects themselves).
pub fn watch_sources(
    controller: Controller<ScaledObject>,
    client: &kube::Client,
    args: &OperatorArgs,
    index: &Arc<SourceIndex>,
) -> Controller<ScaledObject> {
    fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    /// The objects of `api` as they change, with their own backoff and errors logged.
    fn source<K>(
        api: Api<K>,
        name: &'static str,
    ) -> impl futures::Stream<Item = watcher::Result<K>> + Send + 'static
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        errors_logged(
            watch(api, watcher::Config::default()).touched_objects(),
            name,
        )
    }
    let namespace = args.watch_namespace.as_deref();
    let (secrets, auths, cluster_auths) = (Arc::clone(index), Arc::clone(index), Arc::clone(index));
    controller
        .watches_stream(
            source(scoped::<Secret>(client, namespace), "secrets"),
            move |secret: Secret| {
                let (namespace, name) = namespace_and_name(&secret.metadata);
                secrets.changed(&Source::Secret(namespace, name))
            },
        )
        .watches_stream(
            source(
                scoped::<TriggerAuthentication>(client, namespace),
                "triggerauthentications",
            ),
            move |auth: TriggerAuthentication| {
                let (namespace, name) = namespace_and_name(&auth.metadata);
                auths.changed(&Source::TriggerAuthentication(namespace, name))
            },
        )
        .watches_stream(
            source(
                Api::<ClusterTriggerAuthentication>::all(client.clone()),
                "clustertriggerauthentications",
            ),
            move |auth: ClusterTriggerAuthentication| {
                let name = auth.metadata.name.clone().unwrap_or_default();
                cluster_auths.changed(&Source::ClusterTriggerAuthentication(name))
            },
        )
}

fn namespace_and_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Inner {
    fn drop_object(&mut self, object: &ObjectKey) {
        for source in self.by_object.remove(object).into_iter().flatten() {
            if let Some(users) = self.users.get_mut(&source) {
                users.remove(object);
                if users.is_empty() {
                    self.users.remove(&source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ("shop".to_owned(), name.to_owned())
    }

    fn secret(name: &str) -> Source {
        Source::Secret("shop".into(), name.into())
    }

    #[test]
    fn a_changed_secret_marks_only_its_readers_stale() {
        let index = SourceIndex::default();
        index.record(&key("a"), BTreeSet::from([secret("one")]));
        index.record(&key("b"), BTreeSet::from([secret("two")]));
        let hit = index.changed(&secret("one"));
        assert_eq!(hit, vec![ObjectRef::new("a").within("shop")]);
        assert!(index.take_stale(&key("a")));
        assert!(!index.take_stale(&key("a")), "the mark is taken once");
        assert!(!index.take_stale(&key("b")));
        assert!(index.changed(&secret("three")).is_empty());
    }

    #[test]
    fn recording_again_replaces_and_forgetting_removes() {
        let index = SourceIndex::default();
        index.record(&key("a"), BTreeSet::from([secret("one")]));
        index.record(&key("a"), BTreeSet::from([secret("two")]));
        assert!(index.changed(&secret("one")).is_empty());
        assert_eq!(index.changed(&secret("two")).len(), 1);
        index.forget(&key("a"));
        assert!(index.changed(&secret("two")).is_empty());
        assert!(!index.take_stale(&key("a")));
    }
}
