//! The scale target: whatever `scaleTargetRef` names, as long as it has a `/scale`
//! subresource (Deployments, StatefulSets, custom resources) — `spec/kubernetes.md` §4.
//! Discovery maps the kind to its resource once per kind ([`Kinds`]); writes go through `/scale`. Polls read the
//! replicas from a watch (`scaling::replicas`); [`Target::replicas`] is the fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::pinned_kind;

use crate::crd::{GroupVersionKindResource, ScaleTarget};

/// How long a discovered kind is trusted without asking again.
pub const KIND_TTL: Duration = Duration::from_secs(300);

/// Upper bound of every API call the operator makes.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Run an API call bounded by [`API_TIMEOUT`]; running out of time is a client error too.
pub async fn within_api_timeout<T>(call: impl Future<Output = kube::Result<T>>) -> kube::Result<T> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!("no answer within {API_TIMEOUT:?}").into(),
        )),
    }
}

/// Why a scale target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `apiVersion` is not `group/version` or `version`.
    #[error("scaleTargetRef.apiVersion {0:?} is not a valid API version")]
    ApiVersion(String),
    /// Discovery does not know the kind.
    #[error("scaleTargetRef kind {kind:?} in {api_version:?} is not served by the API server")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// Its API version.
        api_version: String,
    },
    /// The kind has no `/scale` subresource.
    #[error("{kind} has no /scale subresource, so it cannot be scaled")]
    NotScalable {
        /// The kind.
        kind: String,
    },
    /// An API call failed.
    #[error("{action} {kind}/{name}: {source}")]
    Api {
        /// What was attempted.
        action: &'static str,
        /// The kind.
        kind: String,
        /// The object.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{action} {kind}/{name}: no answer within {API_TIMEOUT:?}")]
    Timeout {
        /// What was attempted.
        action: &'static str,
        /// The kind.
        kind: String,
        /// The object.
        name: String,
    },
}

/// A kind's resource, whether it has `/scale`, and when discovery said so.
type Discovered = (Arc<ApiResource>, bool, Instant);

/// Discovery answers by kind, so reconciling 10,000 objects of one kind asks the API server
/// once, not 10,000 times. A kind found is remembered for [`KIND_TTL`] (a CRD removed and
/// re-created differently is seen again after that); a kind not found is never remembered,
/// so an object waiting for its CRD resolves as soon as the CRD is installed.
#[derive(Debug, Default)]
pub struct Kinds {
    found: Mutex<HashMap<GroupVersionKind, Discovered>>,
}

impl Kinds {
    /// The resource serving `gvk` and whether it has `/scale`; `None` when discovery does not
    /// know the kind (or did not answer within [`API_TIMEOUT`]).
    async fn discover(
        &self,
        client: &kube::Client,
        gvk: GroupVersionKind,
    ) -> Option<(Arc<ApiResource>, bool)> {
        let remembered = self.lock().get(&gvk).cloned();
        if let Some((resource, scalable, at)) = remembered
            && at.elapsed() < KIND_TTL
        {
            return Some((resource, scalable));
        }
        let discovered = tokio::time::timeout(API_TIMEOUT, pinned_kind(client, &gvk)).await;
        let Ok(Ok((resource, capabilities))) = discovered else {
            self.lock().remove(&gvk);
            return None;
        };
        let scalable = capabilities
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "scale");
        let resource = Arc::new(resource);
        let found = (Arc::clone(&resource), scalable, Instant::now());
        self.lock().insert(gvk, found);
        Some((resource, scalable))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupVersionKind, Discovered>> {
        self.found.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A resolved, scalable target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource (plural, group, version) discovery found, shared by every target of its
    /// kind (five strings per object otherwise).
    pub resource: Arc<ApiResource>,
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

impl Target {
    /// Resolve `reference` in `namespace` through discovery (answers remembered in `kinds`),
    /// checking it can be scaled.
    pub async fn resolve(
        client: &kube::Client,
        kinds: &Kinds,
        namespace: &str,
        reference: &ScaleTarget,
    ) -> Result<Self, TargetError> {
        let api_version = reference.api_version_or_default();
        let kind = reference.kind_or_default();
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        if version.is_empty() || api_version.split('/').count() > 2 {
            return Err(TargetError::ApiVersion(api_version.to_owned()));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let Some((resource, scalable)) = kinds.discover(client, gvk).await else {
            return Err(TargetError::UnknownKind {
                kind: kind.to_owned(),
                api_version: api_version.to_owned(),
            });
        };
        if !scalable {
            return Err(TargetError::NotScalable {
                kind: kind.to_owned(),
            });
        }
        Ok(Target {
            resource,
            name: reference.name.clone(),
            namespace: namespace.to_owned(),
        })
    }

    /// `status.scaleTargetKind`, e.g. `apps/v1.Deployment`.
    pub fn kind_label(&self) -> String {
        format!("{}.{}", self.resource.api_version, self.resource.kind)
    }

    /// `status.scaleTargetGVKR`.
    pub fn gvkr(&self) -> GroupVersionKindResource {
        GroupVersionKindResource {
            group: self.resource.group.clone(),
            version: self.resource.version.clone(),
            kind: self.resource.kind.clone(),
            resource: self.resource.plural.clone(),
        }
    }

    fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &*self.resource)
    }

    /// Current `spec.replicas`, read through `/scale`.
    pub async fn replicas(&self, client: &kube::Client) -> Result<i32, TargetError> {
        let api = self.api(client);
        let scale = self
            .bounded("read the scale of", api.get_scale(&self.name))
            .await?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// Set `spec.replicas` through `/scale`.
    pub async fn scale_to(&self, client: &kube::Client, replicas: i32) -> Result<(), TargetError> {
        self.scale_to_version(client, replicas).await.map(|_| ())
    }

    /// Set `spec.replicas` through `/scale`; returns the object's resourceVersion after the
    /// write (a Scale carries its parent's), so a watch-fed cache can tell older events from
    /// newer ones.
    pub async fn scale_to_version(
        &self,
        client: &kube::Client,
        replicas: i32,
    ) -> Result<Option<String>, TargetError> {
        let api = self.api(client);
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        let params = PatchParams::default();
        let scale = self
            .bounded(
                "scale",
                api.patch_scale(&self.name, &params, &Patch::Merge(&patch)),
            )
            .await?;
        Ok(scale.metadata.resource_version)
    }

    /// The same kind this target is, as a key: group, version and kind.
    pub fn kind_key(&self) -> (String, String, String) {
        (
            self.resource.group.clone(),
            self.resource.version.clone(),
            self.resource.kind.clone(),
        )
    }

    /// The object itself (for its pod template).
    pub async fn object(&self, client: &kube::Client) -> Result<DynamicObject, TargetError> {
        let api = self.api(client);
        self.bounded("read", api.get(&self.name)).await
    }

    async fn bounded<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, TargetError> {
        let kind = self.resource.kind.clone();
        let name = self.name.clone();
        match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(TargetError::Api {
                action,
                kind,
                name,
                source,
            }),
            Err(_) => Err(TargetError::Timeout { action, kind, name }),
        }
    }
}
