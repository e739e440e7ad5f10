//! The replicas of every scale target, kept current by one watch per target kind, so a poll
//! reads `spec.replicas` from memory instead of a GET of `/scale` (design.md §4.3: no API
//! calls in steady state). KEDA reads the same value from its informer cache
//! (`reference/keda.md` §2.5, `GetCurrentReplicas`).
//!
//! Per kind in use, one `watcher` over `Api<DynamicObject>` (namespaced when the operator
//! watches one namespace) feeds a map `(namespace, name) → replicas`; only the number and the
//! resourceVersion are kept, never the object, so a target costs a few dozen bytes.
//!
//! Where the number lives:
//! - Deployments, StatefulSets, ReplicaSets and ReplicationControllers: `.spec.replicas`;
//! - custom resources: the CRD's `subresources.scale.specReplicasPath` (read once per kind);
//! - anything else, or a path this cache cannot follow (`[…]` selectors), or a CRD it cannot
//!   read: a GET of `/scale` per poll, as before — correct, just not free.
//!
//! Until a kind's first list completes a poll waits for it (at most [`SYNC_WAIT`] after the
//! watch started), then falls back to `/scale`; a target the synced cache does not hold (just
//! created, or missing) is read through `/scale` too.
//!
//! Our own writes: after a successful `/scale` write the poll records the new value with the
//! resourceVersion the write returned, *pinned*: watch events older than that version (still
//! in flight when we wrote) cannot overwrite it. Versions are compared as integers when both
//! parse (as every API server, the sandbox included, issues them), else by equality; a pin
//! also expires after [`PIN_TTL`] so an unusual server cannot freeze a value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::controller::target::{Target, TargetError, within_api_timeout};
use crate::operator::watch_backoff::watch_backoff;

/// How long a poll waits for a kind's first list before reading `/scale` instead.
pub const SYNC_WAIT: Duration = Duration::from_secs(5);
/// How long a value we wrote ignores watch events that do not prove to be newer.
pub const PIN_TTL: Duration = Duration::from_secs(30);
/// Page size of the watch's list: bounds the memory of one relist.
const PAGE_SIZE: u32 = 500;

/// `(group, version, kind)`.
type KindKey = (String, String, String);
/// `(namespace, name)`.
type ObjectKey = (String, String);

/// Shared cache of scale-target replicas; cheap to clone.
#[derive(Clone)]
pub struct TargetCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TargetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetCache").finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    namespace: Option<String>,
    cancel: CancellationToken,
    kinds: tokio::sync::Mutex<HashMap<KindKey, Arc<KindCache>>>,
}

/// Where a kind keeps its desired replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// At this path of the object (`["spec", "replicas"]`); watched.
    Path(Vec<String>),
    /// Only through `/scale`; not watched.
    Scale,
}

struct KindCache {
    source: Source,
    started: Instant,
    synced: watch::Receiver<bool>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    live: HashMap<ObjectKey, Entry>,
    /// The map being rebuilt by a (re)list, swapped in when it completes.
    relist: Option<HashMap<ObjectKey, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    replicas: i32,
    version: Option<String>,
    /// Set when we wrote this value ourselves.
    pinned_at: Option<Instant>,
}

impl TargetCache {
    /// A cache watching targets in `namespace` (all when `None`) until `cancel` fires.
    pub fn new(client: kube::Client, namespace: Option<String>, cancel: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                namespace,
                cancel,
                kinds: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// `spec.replicas` of `target`: from the watch when its kind is watched and synced, else
    /// through `/scale`.
    pub async fn replicas(&self, target: &Target) -> Result<i32, TargetError> {
        let kind = self.kind(target).await;
        if kind.wait_synced().await {
            let key = (target.namespace.clone(), target.name.clone());
            let cached = kind.lock().live.get(&key).map(|e| e.replicas);
            if let Some(replicas) = cached {
                return Ok(replicas);
            }
        }
        target.replicas(&self.inner.client).await
    }

    /// Record our own successful write of `replicas` (resourceVersion `version` after it).
    pub async fn wrote(&self, target: &Target, replicas: i32, version: Option<String>) {
        let kinds = self.inner.kinds.lock().await;
        let Some(kind) = kinds.get(&target.kind_key()) else {
            return;
        };
        let entry = Entry {
            replicas,
            version,
            pinned_at: Some(Instant::now()),
        };
        let key = (target.namespace.clone(), target.name.clone());
        let mut entries = kind.lock();
        if let Some(relist) = entries.relist.as_mut() {
            relist.insert(key.clone(), entry.clone());
        }
        entries.live.insert(key, entry);
    }

    /// The cache of `target`'s kind, starting its watch on first use.
    async fn kind(&self, target: &Target) -> Arc<KindCache> {
        let mut kinds = self.inner.kinds.lock().await;
        if let Some(kind) = kinds.get(&target.kind_key()) {
            return Arc::clone(kind);
        }
        let source = source_of(&self.inner.client, target).await;
        let (synced_tx, synced) = watch::channel(false);
        let kind = Arc::new(KindCache {
            source: source.clone(),
            started: Instant::now(),
            synced,
            entries: Mutex::default(),
        });
        kinds.insert(target.kind_key(), Arc::clone(&kind));
        if let Source::Path(path) = source {
            let api = match &self.inner.namespace {
                Some(ns) => Api::namespaced_with(self.inner.client.clone(), ns, &*target.resource),
                None => Api::all_with(self.inner.client.clone(), &*target.resource),
            };
            let run = run_watch(
                api,
                path,
                Arc::clone(&kind),
                synced_tx,
                self.inner.cancel.clone(),
            );
            tokio::spawn(run);
        }
        debug!(kind = %target.kind_label(), source = ?kind.source, "watching scale targets");
        kind
    }
}

impl KindCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether polls can read this kind from memory, waiting for the first list while the
    /// watch is younger than [`SYNC_WAIT`].
    async fn wait_synced(&self) -> bool {
        if self.source == Source::Scale {
            return false;
        }
        if *self.synced.borrow() {
            return true;
        }
        let Some(left) = SYNC_WAIT.checked_sub(self.started.elapsed()) else {
            return false;
        };
        let mut synced = self.synced.clone();
        matches!(
            tokio::time::timeout(left, synced.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }

    fn apply(&self, event: Event<DynamicObject>, path: &[String], synced: &watch::Sender<bool>) {
        let mut entries = self.lock();
        match event {
            Event::Init => entries.relist = Some(HashMap::new()),
            Event::InitApply(object) => {
                let (key, seen) = observed(&object, path);
                let kept = merge(entries.live.get(&key), seen);
                entries.relist.get_or_insert_default().insert(key, kept);
            }
            Event::InitDone => {
                if let Some(relisted) = entries.relist.take() {
                    entries.live = relisted;
                }
                synced.send_replace(true);
            }
            Event::Apply(object) => {
                let (key, seen) = observed(&object, path);
                let kept = merge(entries.live.get(&key), seen);
                entries.live.insert(key, kept);
            }
            Event::Delete(object) => {
                let (key, _) = observed(&object, path);
                entries.live.remove(&key);
            }
        }
    }
}

/// Feed `kind` from a watch of `api` until `cancel` fires.
async fn run_watch(
    api: Api<DynamicObject>,
    path: Vec<String>,
    kind: Arc<KindCache>,
    synced: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let config = watcher::Config::default().page_size(PAGE_SIZE);
    let mut events = std::pin::pin!(watcher(api, config).backoff(watch_backoff()));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            event = events.next() => match event {
                None => return,
                Some(Ok(event)) => kind.apply(event, &path, &synced),
                Some(Err(error)) => warn!(error = %error, "watching scale targets failed; retrying"),
            },
        }
    }
}

/// The key and the replicas an object carries at `path` (0 when absent, as `/scale` reports).
fn observed(object: &DynamicObject, path: &[String]) -> (ObjectKey, Entry) {
    let key = (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    );
    let mut value = &object.data;
    for segment in path {
        value = &value[segment.as_str()];
    }
    let replicas = value
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0);
    let entry = Entry {
        replicas,
        version: object.metadata.resource_version.clone(),
        pinned_at: None,
    };
    (key, entry)
}

/// What to keep when the watch reports `seen` for an object whose entry is `existing`: the
/// watch wins unless `existing` is our own pinned write and `seen` is not provably as new.
fn merge(existing: Option<&Entry>, seen: Entry) -> Entry {
    let Some(ours) = existing.filter(|e| e.pinned_at.is_some_and(|at| at.elapsed() < PIN_TTL))
    else {
        return seen;
    };
    let newer = match (ours.version.as_deref(), seen.version.as_deref()) {
        (Some(ours), Some(theirs)) => match (ours.parse::<u64>(), theirs.parse::<u64>()) {
            (Ok(ours), Ok(theirs)) => theirs >= ours,
            _ => ours == theirs,
        },
        _ => true,
    };
    if newer { seen } else { ours.clone() }
}

/// Where `target`'s kind keeps its replicas.
async fn source_of(client: &kube::Client, target: &Target) -> Source {
    let resource = &target.resource;
    let builtin = matches!(
        (resource.group.as_str(), resource.kind.as_str()),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") | ("", "ReplicationController")
    );
    if builtin {
        return Source::Path(vec!["spec".to_owned(), "replicas".to_owned()]);
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{}.{}", resource.plural, resource.group);
    let crd = match within_api_timeout(api.get_opt(&name)).await {
        Ok(Some(crd)) => crd,
        Ok(None) => return Source::Scale,
        Err(error) => {
            debug!(crd = %name, error = %error, "cannot read the CRD; reading replicas through /scale");
            return Source::Scale;
        }
    };
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == resource.version)
        .and_then(|v| v.subresources.as_ref()?.scale.as_ref())
        .and_then(|scale| parse_path(&scale.spec_replicas_path))
        .map_or(Source::Scale, Source::Path)
}

/// `.spec.replicas` → `["spec", "replicas"]`; `None` for anything but plain dotted fields.
fn parse_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('.')?;
    let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
    let plain = segments
        .iter()
        .all(|s| !s.is_empty() && !s.contains(['[', ']', '*', '@', '"', '\'']));
    plain.then_some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(replicas: i32, version: &str, pinned: bool) -> Entry {
        Entry {
            replicas,
            version: Some(version.to_owned()),
            pinned_at: pinned.then(Instant::now),
        }
    }

    #[test]
    fn the_watch_wins_over_unpinned_values() {
        let kept = merge(Some(&entry(1, "10", false)), entry(3, "9", false));
        assert_eq!(kept.replicas, 3);
        assert_eq!(merge(None, entry(2, "1", false)).replicas, 2);
    }

    #[test]
    fn our_write_survives_older_events_and_yields_to_newer_ones() {
        let ours = entry(1, "10", true);
        assert_eq!(merge(Some(&ours), entry(0, "9", false)).replicas, 1);
        let same = merge(Some(&ours), entry(1, "10", false));
        assert_eq!(
            (same.replicas, same.pinned_at),
            (1, None),
            "confirmed: unpinned"
        );
        assert_eq!(merge(Some(&ours), entry(4, "11", false)).replicas, 4);
    }

    #[test]
    fn opaque_versions_unpin_only_on_equality() {
        let ours = entry(1, "abc", true);
        assert_eq!(merge(Some(&ours), entry(0, "xyz", false)).replicas, 1);
        assert_eq!(merge(Some(&ours), entry(1, "abc", false)).pinned_at, None);
    }

    #[test]
    fn replica_paths() {
        assert_eq!(
            parse_path(".spec.size"),
            Some(vec!["spec".to_owned(), "size".to_owned()])
        );
        assert_eq!(parse_path("spec.replicas"), None);
        assert_eq!(parse_path(".spec.items[0].n"), None);
        assert_eq!(parse_path("."), None);
    }

    #[test]
    fn replicas_are_read_at_the_path_and_default_to_zero() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"size": 4}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let size = vec!["spec".to_owned(), "size".to_owned()];
        let (key, seen) = observed(&object, &size);
        assert_eq!(key, ("ns".to_owned(), "a".to_owned()));
        assert_eq!((seen.replicas, seen.version.as_deref()), (4, Some("7")));
        let missing = vec!["spec".to_owned(), "replicas".to_owned()];
        assert_eq!(observed(&object, &missing).1.replicas, 0);
    }
}
