//! The object store: every object of every resource, one global resourceVersion, watch history.
//!
//! # Using the store from in-process code (controllers, tests, `tidescale dev`)
//!
//! Objects are plain `serde_json::Value`s exactly as they appear on the wire. A resource is named
//! by its [`GroupResource`] (`GroupResource::new("apps", "deployments")`, core group `""`);
//! versions share storage, so the store does not care which version wrote an object.
//!
//! ```text
//! let deploys = GroupResource::new("apps", "deployments");
//! let d = store.get(&deploys, Some("default"), "web")?;               // 404 -> ApiError
//! let (items, list_rv) = store.list(&deploys, Some("default"));        // None = all namespaces
//! let created = store.create(&pods, pod_json, &WriteOptions::default())?;
//! let updated = store.update(&deploys, changed, &WriteOptions::status())?; // PUT .../status
//! store.patch(&deploys, Some("default"), "web", PatchKind::Merge, &json!({"spec":{"replicas":3}}),
//!             &PatchContext::default())?;                               // see crate::patch
//! store.delete(&pods, Some("default"), "web-abc", &DeleteOptions::default())?;
//! let mut sub = store.watch(&deploys, None, Some(list_rv))?;            // events after list_rv
//! while let Some(Ok(ev)) = sub.next().await { /* ev.event_type, ev.object, ev.rv */ }
//! ```
//!
//! Writes through the store get the same treatment as writes through HTTP: defaulting and
//! validation ([`crate::admission`]), `uid`/`creationTimestamp`/`generation` handling,
//! optimistic concurrency (an update carrying a stale `metadata.resourceVersion` fails with 409;
//! one without a resourceVersion is unconditional except for custom resources), status
//! subresource rules, two-phase deletion with finalizers, and a watch event per change. Owner
//! reference garbage collection runs as a separate task ([`crate::gc`]) that reacts to deletions.
//!
//! Everything sits behind one mutex: the sandbox serves tests and a laptop, not a fleet, and a
//! single lock makes "assign RV, store, publish in RV order" trivially linearizable
//! (`spec/kubernetes.md` §5.12). The lock is never held across an `.await`.
//!
//! Stored objects are immutable `Arc<Value>`s, replaced whole on every write, so [`Store::list`]
//! hands out shared references instead of deep copies: the simulated controllers list every
//! workload every tick, and with thousands of Deployments copying them all cost a CPU core.

mod checks;
pub mod meta;
mod options;
pub mod registry;
pub mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::admission;
use crate::clock::{ClockHandle, format_time};
use crate::error::ApiError;
pub use checks::has_pending_finalizers;
use checks::{
    check_delete_preconditions, check_namespace_open, check_preconditions, strip_volatile,
};
pub use options::{DeleteOptions, Propagation, Subresource, WriteOptions};
pub use registry::{Registry, ResourceInfo};
pub use watch::{EventType, Subscription, WatchEvent};
use watch::{Notice, too_old};

/// Default number of events kept for watches that resume from an older resourceVersion.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Longest live-watch backlog (events) before a slow watcher gets 410 Expired.
pub const MAX_LIVE_BACKLOG: usize = 262_144;

/// A resource independent of version: API group (`""` for core) and plural name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group, `""` for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds a group-resource.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl fmt::Display for GroupResource {
    /// `deployments.apps`, or `configmaps` for the core group (kube-apiserver's wording).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Namespaces kube-apiserver refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Finalizer the store adds for foreground deletion (served by the garbage collector).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer the store adds for orphan deletion (served by the garbage collector).
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Namespace (empty for cluster-scoped objects) and name.
pub type ObjectKey = (String, String);

/// One page of a list ([`Store::list_page`]).
#[derive(Debug)]
pub struct ListPage {
    /// The objects of the page, ordered by namespace and name.
    pub items: Vec<Value>,
    /// How many more objects match after the page.
    pub remaining: usize,
    /// The resourceVersion of the snapshot.
    pub rv: u64,
}

#[derive(Debug)]
struct State {
    rv: u64,
    objects: BTreeMap<GroupResource, BTreeMap<ObjectKey, Arc<Value>>>,
    /// The resourceVersion of each resource's latest change ([`Store::last_change`]).
    changed_at: BTreeMap<GroupResource, u64>,
    history: VecDeque<Arc<WatchEvent>>,
    history_capacity: usize,
    /// Every event with a resourceVersion above this one is still in `history`.
    compacted: u64,
}

/// The sandbox's object store. Cheap to share as `Arc<Store>`.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Notice>,
    registry: Registry,
    clock: ClockHandle,
}

fn key(ns: Option<&str>, name: &str) -> ObjectKey {
    (ns.unwrap_or_default().to_owned(), name.to_owned())
}

impl Store {
    /// An empty store holding the namespaces every cluster has.
    pub fn new(clock: ClockHandle, history_capacity: usize) -> Arc<Self> {
        // Live watchers may fall this many events behind before they get 410 Expired; a
        // caller asking for a long history (a load test's burst of writes) gets as long a
        // channel, up to MAX_LIVE_BACKLOG.
        let (tx, _) = broadcast::channel(history_capacity.clamp(64, MAX_LIVE_BACKLOG));
        let store = Arc::new(Self {
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                changed_at: BTreeMap::new(),
                history: VecDeque::new(),
                history_capacity: history_capacity.max(1),
                compacted: 0,
            }),
            tx,
            registry: Registry::default(),
            clock,
        });
        let namespaces = GroupResource::new("", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // These names are valid and the store is empty, so creation cannot fail.
            let _ = store.create(&namespaces, obj, &WriteOptions::default());
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections commit whole objects at once, so a poisoned lock holds valid data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry of served resources (built-ins plus installed CRDs).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The clock used for timestamps.
    pub fn clock(&self) -> &ClockHandle {
        &self.clock
    }

    /// Now, formatted as `metav1.Time`.
    pub fn now_string(&self) -> String {
        format_time(self.clock.now())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The resourceVersion of the latest change to any object of `resources` (0 if none
    /// changed yet): a reader of only these resources has nothing new to see while it stays put.
    pub fn last_change(&self, resources: &[GroupResource]) -> u64 {
        let st = self.lock();
        let at = |gr| st.changed_at.get(gr).copied().unwrap_or(0);
        resources.iter().map(at).max().unwrap_or(0)
    }

    /// The resource info, or 404 if the resource is not served.
    pub fn info(&self, gr: &GroupResource) -> Result<Arc<ResourceInfo>, ApiError> {
        self.registry
            .get(gr)
            .filter(|i| i.stored)
            .ok_or_else(ApiError::no_route)
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let info = self.info(gr)?;
        let ns = if info.namespaced { ns } else { None };
        self.lock()
            .objects
            .get(gr)
            .and_then(|m| m.get(&key(ns, name)))
            .map(|v| Value::clone(v))
            .ok_or_else(|| ApiError::not_found(gr, name))
    }

    /// All objects of a resource (in one namespace, or all), ordered by namespace and name, with
    /// the resourceVersion of the snapshot. The objects are shared, not copied: a caller that
    /// wants to change one clones it (`Value::clone(&obj)`).
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let st = self.lock();
        let items = st
            .objects
            .get(gr)
            .map(|m| {
                m.iter()
                    .filter(|((o_ns, _), _)| ns.is_none_or(|ns| ns == o_ns))
                    .map(|(_, v)| Arc::clone(v))
                    .collect()
            })
            .unwrap_or_default();
        (items, st.rv)
    }

    /// One page of a list: the objects after `after` (exclusive, by namespace and name) that
    /// `keep` accepts, at most `limit` of them, and how many more `keep` accepts beyond the page.
    /// Only the page is copied, so walking a large collection in pages costs what it returns.
    pub fn list_page(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        after: Option<ObjectKey>,
        limit: Option<usize>,
        keep: impl Fn(&Value) -> bool,
    ) -> ListPage {
        use std::ops::Bound;
        let st = self.lock();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = ListPage {
            items: Vec::new(),
            remaining: 0,
            rv: st.rv,
        };
        let Some(objects) = st.objects.get(gr) else {
            return page;
        };
        let matching = objects
            .range((lower, Bound::Unbounded))
            .filter(|((o_ns, _), _)| ns.is_none_or(|ns| ns == o_ns))
            .map(|(_, v)| v)
            .filter(|v| keep(v));
        for object in matching {
            if limit.is_some_and(|l| page.items.len() >= l) {
                page.remaining += 1;
            } else {
                page.items.push(Value::clone(object));
            }
        }
        page
    }

    /// Events with a resourceVersion above this one are still available to watches.
    pub fn oldest_watchable(&self) -> u64 {
        self.lock().compacted
    }

    /// Creates an object (`POST`).
    pub fn create(
        &self,
        gr: &GroupResource,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(gr)?;
        admission::prepare_create(&info, &mut obj, &self.now_string(), opts.strict)?;
        let ns = meta::namespace(&obj).map(str::to_owned);
        let name = meta::name(&obj).to_owned();
        let mut st = self.lock();
        if info.namespaced {
            let ns = ns.as_deref().unwrap_or_default();
            check_namespace_open(&st, ns)?;
        }
        let k = key(ns.as_deref(), &name);
        if st.objects.get(gr).is_some_and(|m| m.contains_key(&k)) {
            return Err(ApiError::already_exists(gr, &name));
        }
        if opts.dry_run {
            return Ok(obj);
        }
        Ok(self.commit(&mut st, gr, k, EventType::Added, obj, None))
    }

    /// Replaces an object (`PUT`), taking namespace and name from the object.
    pub fn update(
        &self,
        gr: &GroupResource,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(gr)?;
        let ns = if info.namespaced {
            meta::namespace(&obj).map(str::to_owned)
        } else {
            None
        };
        let name = meta::name(&obj).to_owned();
        let k = key(ns.as_deref(), &name);
        let mut st = self.lock();
        let old = st
            .objects
            .get(gr)
            .and_then(|m| m.get(&k))
            .map(|v| Value::clone(v));
        let old = old.ok_or_else(|| ApiError::not_found(gr, &name))?;
        check_preconditions(gr, &info, &old, &obj)?;
        let new = admission::prepare_update(&info, &old, obj, opts.subresource, opts.strict)?;
        if strip_volatile(&new) == strip_volatile(&old) {
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(new);
        }
        if meta::is_deleting(&new) && !has_pending_finalizers(&new) {
            return Ok(self.commit(&mut st, gr, k, EventType::Deleted, new, Some(old)));
        }
        Ok(self.commit(&mut st, gr, k, EventType::Modified, new, Some(old)))
    }

    /// Deletes an object (`DELETE`). With finalizers (or a foreground/orphan policy) the object
    /// only gets a `deletionTimestamp` and stays until the finalizers are gone.
    pub fn delete(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(gr)?;
        let ns = if info.namespaced { ns } else { None };
        let k = key(ns, name);
        let mut st = self.lock();
        let old = st
            .objects
            .get(gr)
            .and_then(|m| m.get(&k))
            .map(|v| Value::clone(v));
        let old = old.ok_or_else(|| ApiError::not_found(gr, name))?;
        check_delete_preconditions(gr, name, &old, opts)?;
        if gr.group.is_empty()
            && gr.resource == "namespaces"
            && PROTECTED_NAMESPACES.contains(&name)
        {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ))
            .with_details(json!({"name": name, "kind": "namespaces"})));
        }
        if meta::is_deleting(&old) {
            return Ok(old);
        }
        let mut new = old.clone();
        match opts.propagation {
            Some(Propagation::Foreground) => meta::add_finalizer(&mut new, FOREGROUND_FINALIZER),
            Some(Propagation::Orphan) => meta::add_finalizer(&mut new, ORPHAN_FINALIZER),
            _ => {}
        }
        if gr.group.is_empty() && gr.resource == "namespaces" {
            new["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(new);
        }
        if has_pending_finalizers(&new) {
            let m = meta::metadata_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(self.now_string()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(self.commit(&mut st, gr, k, EventType::Modified, new, Some(old)));
        }
        Ok(self.commit(&mut st, gr, k, EventType::Deleted, new, Some(old)))
    }

    /// Subscribes to changes of a resource. `since = None` starts with a synthetic `ADDED` for
    /// every current object; `Some(rv)` replays the history after `rv` (410 if compacted).
    pub fn watch(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        since: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        self.info(gr)?;
        let st = self.lock();
        let rx = self.tx.subscribe();
        let in_ns = |o: &Value| ns.is_none_or(|ns| meta::namespace(o) == Some(ns));
        let backlog: VecDeque<Arc<WatchEvent>> = match since {
            None => st
                .objects
                .get(gr)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|o| in_ns(o))
                .map(|o| {
                    Arc::new(WatchEvent {
                        event_type: EventType::Added,
                        resource: gr.clone(),
                        rv: meta::resource_version(o)
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(st.rv),
                        object: Value::clone(o),
                        old: None,
                    })
                })
                .collect(),
            Some(rv) if rv < st.compacted => return Err(too_old(rv, st.compacted)),
            Some(rv) if rv > st.rv => return Err(ApiError::too_large_resource_version(rv, st.rv)),
            Some(rv) => st
                .history
                .iter()
                .filter(|e| e.rv > rv && &e.resource == gr && in_ns(&e.object))
                .cloned()
                .collect(),
        };
        let start = since.unwrap_or(st.rv);
        Ok(Subscription::new(
            backlog,
            rx,
            Some(gr.clone()),
            ns.map(str::to_owned),
            start,
        ))
    }

    /// Subscribes to every future change of every resource (the garbage collector's feed).
    pub fn watch_everything(&self) -> Subscription {
        let st = self.lock();
        Subscription::new(VecDeque::new(), self.tx.subscribe(), None, None, st.rv)
    }

    /// Every stored object with its resource (a full scan; the sandbox is small).
    pub fn all_objects(&self) -> Vec<(GroupResource, Value)> {
        let st = self.lock();
        st.objects
            .iter()
            .flat_map(|(gr, m)| m.values().map(move |o| (gr.clone(), Value::clone(o))))
            .collect()
    }

    /// Applies `change` to the latest version of an object and stores it, retrying when another
    /// writer got there first. `Ok(None)` if the object is gone or `change` returns false.
    pub fn mutate(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        name: &str,
        change: impl Fn(&mut Value) -> bool,
    ) -> Result<Option<Value>, ApiError> {
        for _ in 0..10 {
            let mut obj = match self.get(gr, ns, name) {
                Ok(obj) => obj,
                Err(e) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e),
            };
            if !change(&mut obj) {
                return Ok(None);
            }
            match self.update(gr, obj, &WriteOptions::default()) {
                Err(e) if e.reason == "Conflict" => continue,
                other => return other.map(Some),
            }
        }
        Err(ApiError::conflict(gr, name))
    }

    /// Drops the whole watch history: watches resuming from any older resourceVersion get 410,
    /// and open watches end with a 410 ERROR event (a test hook for relist recovery).
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.rv;
        st.history.clear();
        let _ = self.tx.send(Notice::Compacted(st.rv));
    }

    /// Assigns the next resourceVersion, stores or removes the object, records and publishes the
    /// event. Returns the object as stored.
    fn commit(
        &self,
        st: &mut State,
        gr: &GroupResource,
        k: ObjectKey,
        event_type: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        st.rv += 1;
        let rv = st.rv;
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        if let Some(at) = st.changed_at.get_mut(gr) {
            *at = rv;
        } else {
            st.changed_at.insert(gr.clone(), rv);
        }
        let objects = st.objects.entry(gr.clone()).or_default();
        if event_type == EventType::Deleted {
            objects.remove(&k);
        } else {
            objects.insert(k, Arc::new(obj.clone()));
        }
        let event = Arc::new(WatchEvent {
            event_type,
            resource: gr.clone(),
            rv,
            object: obj.clone(),
            old,
        });
        st.history.push_back(event.clone());
        while st.history.len() > st.history_capacity {
            if let Some(dropped) = st.history.pop_front() {
                st.compacted = dropped.rv;
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(Notice::Event(event));
        if gr.group == "apiextensions.k8s.io" && gr.resource == "customresourcedefinitions" {
            self.after_crd_write(st, &obj, event_type);
        }
        obj
    }

    /// Keeps the registry in step with CRDs; a removed CRD takes its objects with it.
    fn after_crd_write(&self, st: &mut State, crd: &Value, event_type: EventType) {
        let name = meta::name(crd).to_owned();
        if event_type != EventType::Deleted {
            self.registry.sync_crd(&name, Some(crd));
            return;
        }
        let removed = self
            .registry
            .all()
            .into_iter()
            .find(|i| i.is_custom() && format!("{}.{}", i.plural, i.group) == name);
        self.registry.sync_crd(&name, None);
        if let Some(info) = removed {
            let gr = info.group_resource();
            let objects = st.objects.remove(&gr).unwrap_or_default();
            for (k, obj) in objects {
                st.objects
                    .entry(gr.clone())
                    .or_default()
                    .insert(k.clone(), obj.clone());
                self.commit(st, &gr, k, EventType::Deleted, Value::clone(&obj), None);
            }
        }
    }
}

#[cfg(test)]
mod tests;
