//! Building a ScaledObject's scalers from the cluster: the scale target's pod template (for
//! `<key>FromEnv`), the (Cluster)TriggerAuthentication and the Secrets and ConfigMaps both
//! name are fetched, then resolved by the same pure functions `tidescale check` uses.
//!
//! Resolving and building are two steps: [`resolve_triggers`] reads the cluster and yields each
//! trigger's `ScalerConfig`, the objects they came from ([`Source`], for the Secret watch) and a
//! digest of every resolved value; [`build_resolved`] then builds the scalers. Reconcile compares
//! digests so a rotated Secret that resolves to the same values rebuilds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::api::Api;
use tidescale_scalers::{MetricSpec, Scaler, ScalerConfig, build_scaler};

use super::secrets::Source;
use super::target::{API_TIMEOUT, Target};
use crate::crd::{
    ClusterTriggerAuthentication, ScaleTriggers, ScaledObject, TriggerAuthentication,
    TriggerAuthenticationSpec,
};
use crate::resolve::{
    AuthContext, Lookup, ObjectMaps, ResolvedAuth, TriggerSite, resolve_auth, resolve_env,
    scaler_config,
};

/// One built trigger of a ScaledObject.
#[derive(Debug)]
pub struct BuiltTrigger {
    /// Position in `spec.triggers`.
    pub index: usize,
    /// The trigger's `name`, if any.
    pub name: Option<String>,
    /// The trigger's `type`.
    pub trigger_type: String,
    /// The scaler polling it.
    pub scaler: Box<dyn Scaler>,
    /// Its metrics.
    pub specs: Vec<MetricSpec>,
}

/// Why an object's triggers could not be built. Names objects and keys, never values.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Reading a referenced object failed.
    #[error("reading {kind} {name:?}: {message}")]
    Read {
        /// Kind read.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// Env or auth resolution failed.
    #[error("trigger {index}: {source}")]
    Resolve {
        /// Trigger index.
        index: usize,
        /// Why.
        #[source]
        source: crate::resolve::ResolveError,
    },
    /// The scaler rejected its configuration or could not connect.
    #[error("trigger {index}: {source}")]
    Scaler {
        /// Trigger index.
        index: usize,
        /// Why.
        #[source]
        source: tidescale_scalers::ScalerError,
    },
}

/// One trigger resolved from the cluster, not built yet.
pub struct ResolvedTrigger {
    /// Position in `spec.triggers`.
    pub index: usize,
    /// The trigger's `name`, if any.
    pub name: Option<String>,
    /// The trigger's `type`.
    pub trigger_type: String,
    /// What the scaler is built from (holds secrets: never printed).
    pub config: ScalerConfig,
}

/// Every trigger of an object, resolved.
pub struct ResolvedTriggers {
    /// In trigger order.
    pub triggers: Vec<ResolvedTrigger>,
    /// The Secrets and (Cluster)TriggerAuthentications read, found or not.
    pub sources: BTreeSet<Source>,
    /// A digest of every resolved value: equal digests build equal scalers.
    pub digest: u64,
}

/// Build every trigger of `so`, whose target `target` has been resolved.
pub async fn build_triggers(
    client: &kube::Client,
    so: &ScaledObject,
    target: &Target,
    cluster_object_namespace: &str,
    timeout: Duration,
) -> Result<Vec<BuiltTrigger>, TriggerError> {
    let resolved = resolve_triggers(client, so, target, cluster_object_namespace, timeout).await?;
    build_resolved(resolved.triggers, &[]).await
}

/// Resolve every trigger of `so` (env, auth, Secrets, ConfigMaps) without building scalers.
pub async fn resolve_triggers(
    client: &kube::Client,
    so: &ScaledObject,
    target: &Target,
    cluster_object_namespace: &str,
    timeout: Duration,
) -> Result<ResolvedTriggers, TriggerError> {
    let namespace = target.namespace.as_str();
    let mut auths = Vec::with_capacity(so.spec.triggers.len());
    for trigger in &so.spec.triggers {
        auths.push(trigger_auth(client, namespace, trigger).await?);
    }
    // The target's containers matter only to `…FromEnv` metadata and `env` auth entries: a
    // GET per object saved on every (re)start when nothing reads them.
    let reads_env = so
        .spec
        .triggers
        .iter()
        .any(|t| t.metadata.keys().any(|key| key.ends_with("FromEnv")))
        || auths.iter().flatten().any(|(spec, _)| !spec.env.is_empty());
    let pod = match reads_env {
        true => pod_template(client, target).await?,
        false => None,
    };
    let mut triggers = Vec::with_capacity(so.spec.triggers.len());
    let mut sources = BTreeSet::new();
    for ((index, trigger), auth) in so.spec.triggers.iter().enumerate().zip(auths) {
        if let Some(reference) = &trigger.authentication_ref {
            sources.insert(
                if reference.kind_or_default() == "ClusterTriggerAuthentication" {
                    Source::ClusterTriggerAuthentication(reference.name.clone())
                } else {
                    Source::TriggerAuthentication(namespace.to_owned(), reference.name.clone())
                },
            );
        }
        let (objects, read) = fetch_objects(
            client,
            namespace,
            pod.as_ref(),
            auth.as_ref(),
            cluster_object_namespace,
        )
        .await?;
        sources.extend(read);
        let container = so
            .spec
            .scale_target_ref
            .env_source_container_name
            .as_deref();
        let env = match &pod {
            Some(pod) => resolve_env(namespace, pod, container, &objects)
                .map_err(|source| TriggerError::Resolve { index, source })?,
            None => Default::default(),
        };
        let resolved = match &auth {
            Some((spec, cluster_scoped)) => {
                let secrets_namespace = if *cluster_scoped {
                    cluster_object_namespace
                } else {
                    namespace
                };
                let ctx = AuthContext {
                    namespace: secrets_namespace,
                    cluster_scoped: *cluster_scoped,
                    target_namespace: namespace,
                    target_pod: pod.as_ref(),
                };
                resolve_auth(spec, ctx, &objects)
                    .map_err(|source| TriggerError::Resolve { index, source })?
            }
            None => ResolvedAuth::default(),
        };
        let site = TriggerSite {
            namespace,
            name: so.metadata.name.as_deref().unwrap_or_default(),
            index,
        };
        triggers.push(ResolvedTrigger {
            index,
            name: trigger.name.clone(),
            trigger_type: trigger.type_.clone(),
            config: scaler_config(site, trigger, &env, &resolved, timeout),
        });
    }
    let digest = digest(&triggers);
    Ok(ResolvedTriggers {
        triggers,
        sources,
        digest,
    })
}

/// Build the scalers of resolved triggers. On a failure the scalers already built are closed,
/// as KEDA does — except when `previous` (the running triggers of the same spec) knows the
/// trigger and the failure is the backend's, not the configuration's: rotated credentials that
/// do not work (yet). That trigger then gets a [`DeferredScaler`]: same metrics, each query
/// retries the build and fails until it works, so fallback and health apply as for any
/// failing query, and nothing scales in because of it.
pub async fn build_resolved(
    triggers: Vec<ResolvedTrigger>,
    previous: &[BuiltTrigger],
) -> Result<Vec<BuiltTrigger>, TriggerError> {
    let mut built: Vec<BuiltTrigger> = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        let index = trigger.index;
        let known = previous
            .iter()
            .find(|p| p.index == index && p.trigger_type == trigger.trigger_type);
        let scaler = match build_scaler(&trigger.config).await {
            Ok(scaler) => scaler,
            Err(source) if !source.is_config() && known.is_some() => {
                let known = known.map(|p| (p.scaler.scaler_type(), p.specs.clone()));
                let (scaler_type, specs) = known.unwrap_or_default();
                tracing::warn!(namespace = %trigger.config.namespace, scaled_object = %trigger.config.name, trigger_index = index, error = %source, "cannot build the scaler; queries will retry");
                Box::new(DeferredScaler {
                    config: trigger.config,
                    scaler_type,
                    specs,
                    built: tokio::sync::OnceCell::new(),
                })
            }
            Err(source) => {
                for done in &built {
                    let _ = done.scaler.close().await;
                }
                return Err(TriggerError::Scaler { index, source });
            }
        };
        let specs = scaler.metric_specs();
        built.push(BuiltTrigger {
            index,
            name: trigger.name,
            trigger_type: trigger.trigger_type,
            scaler,
            specs,
        });
    }
    Ok(built)
}

/// A scaler whose build failed on the backend: it keeps the metrics of the scaler it replaces
/// and builds on the first query that can, failing each query until then.
#[derive(Debug)]
pub struct DeferredScaler {
    config: ScalerConfig,
    scaler_type: &'static str,
    specs: Vec<MetricSpec>,
    built: tokio::sync::OnceCell<Box<dyn Scaler>>,
}

type ScalerFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, tidescale_scalers::ScalerError>> + Send + 'a>>;

// Written out as `#[async_trait]` expands it, so this crate needs no macro of its own.
impl Scaler for DeferredScaler {
    fn scaler_type(&self) -> &'static str {
        self.scaler_type
    }

    fn metric_specs(&self) -> Vec<MetricSpec> {
        self.specs.clone()
    }

    fn metrics_and_activity<'a, 'b, 'c>(
        &'a self,
        metric_name: &'b str,
    ) -> ScalerFuture<'c, tidescale_scalers::MetricsAndActivity>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            let scaler = self
                .built
                .get_or_try_init(|| build_scaler(&self.config))
                .await?;
            scaler.metrics_and_activity(metric_name).await
        })
    }

    fn close<'a, 'c>(&'a self) -> ScalerFuture<'c, ()>
    where
        'a: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            match self.built.get() {
                Some(scaler) => scaler.close().await,
                None => Ok(()),
            }
        })
    }
}

/// A digest of what the scalers are built from. In memory only, never printed: it covers
/// secret values.
fn digest(triggers: &[ResolvedTrigger]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for trigger in triggers {
        let config = &trigger.config;
        trigger.index.hash(&mut hasher);
        trigger.name.hash(&mut hasher);
        trigger.trigger_type.hash(&mut hasher);
        config.metadata.hash(&mut hasher);
        config.auth_params.hash(&mut hasher);
        config.resolved_env.hash(&mut hasher);
        format!("{:?}", config.pod_identity).hash(&mut hasher);
        format!("{:?}", config.metric_type).hash(&mut hasher);
        config.timeout.hash(&mut hasher);
    }
    hasher.finish()
}

/// The target's `spec.template.spec`, when it has one.
async fn pod_template(
    client: &kube::Client,
    target: &Target,
) -> Result<Option<PodSpec>, TriggerError> {
    let object = target
        .object(client)
        .await
        .map_err(|e| TriggerError::Read {
            kind: "scale target",
            name: target.name.clone(),
            message: e.to_string(),
        })?;
    Ok(object
        .data
        .pointer("/spec/template/spec")
        .and_then(|spec| serde_json::from_value(spec.clone()).ok()))
}

/// The referenced (Cluster)TriggerAuthentication's spec, and whether it is cluster-scoped.
/// A missing one resolves to no params, as KEDA does (the scaler then reports what it lacks).
async fn trigger_auth(
    client: &kube::Client,
    namespace: &str,
    trigger: &ScaleTriggers,
) -> Result<Option<(TriggerAuthenticationSpec, bool)>, TriggerError> {
    let Some(reference) = &trigger.authentication_ref else {
        return Ok(None);
    };
    if reference.kind_or_default() == "ClusterTriggerAuthentication" {
        let api: Api<ClusterTriggerAuthentication> = Api::all(client.clone());
        let found = bounded(
            "ClusterTriggerAuthentication",
            &reference.name,
            api.get_opt(&reference.name),
        )
        .await?;
        Ok(found.map(|cta| (cta.spec.0, true)))
    } else {
        let api: Api<TriggerAuthentication> = Api::namespaced(client.clone(), namespace);
        let found = bounded(
            "TriggerAuthentication",
            &reference.name,
            api.get_opt(&reference.name),
        )
        .await?;
        Ok(found.map(|ta| (ta.spec, false)))
    }
}

/// Fetch every Secret and ConfigMap the pod template and the auth spec name; also returns the
/// Secrets named, found or not, for the Secret watch.
async fn fetch_objects(
    client: &kube::Client,
    namespace: &str,
    pod: Option<&PodSpec>,
    auth: Option<&(TriggerAuthenticationSpec, bool)>,
    cluster_object_namespace: &str,
) -> Result<(ObjectMaps, Vec<Source>), TriggerError> {
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut config_maps: Vec<(String, String)> = Vec::new();
    for container in pod.iter().flat_map(|p| &p.containers) {
        for source in container.env_from.iter().flatten() {
            if let Some(r) = &source.secret_ref {
                secrets.push((namespace.to_owned(), r.name.clone()));
            }
            if let Some(r) = &source.config_map_ref {
                config_maps.push((namespace.to_owned(), r.name.clone()));
            }
        }
        for var in container
            .env
            .iter()
            .flatten()
            .filter_map(|v| v.value_from.as_ref())
        {
            if let Some(r) = &var.secret_key_ref {
                secrets.push((namespace.to_owned(), r.name.clone()));
            }
            if let Some(r) = &var.config_map_key_ref {
                config_maps.push((namespace.to_owned(), r.name.clone()));
            }
        }
    }
    if let Some((spec, cluster_scoped)) = auth {
        let ns = if *cluster_scoped {
            cluster_object_namespace
        } else {
            namespace
        };
        secrets.extend(
            spec.secret_target_ref
                .iter()
                .map(|r| (ns.to_owned(), r.name.clone())),
        );
        config_maps.extend(
            spec.config_map_target_ref
                .iter()
                .map(|r| (ns.to_owned(), r.name.clone())),
        );
        if let Some(oauth2) = &spec.oauth2 {
            secrets.push((
                ns.to_owned(),
                oauth2.client_secret.value_from.secret_key_ref.name.clone(),
            ));
        }
    }
    let mut objects = ObjectMaps::new(Lookup::Missing);
    let secrets = dedup(secrets);
    let read = secrets
        .iter()
        .map(|(ns, name)| Source::Secret(ns.clone(), name.clone()))
        .collect();
    for (ns, name) in secrets {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        if let Some(secret) = bounded("Secret", &name, api.get_opt(&name)).await? {
            objects.secrets.insert((ns, name), secret_strings(&secret));
        }
    }
    for (ns, name) in dedup(config_maps) {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        if let Some(cm) = bounded("ConfigMap", &name, api.get_opt(&name)).await? {
            objects
                .config_maps
                .insert((ns, name), cm.data.unwrap_or_default());
        }
    }
    Ok((objects, read))
}

fn dedup(mut names: Vec<(String, String)>) -> Vec<(String, String)> {
    names.sort();
    names.dedup();
    names
}

/// A Secret's values as text; values that are not UTF-8 cannot feed a scaler and are left out.
fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    data.extend(secret.string_data.clone().unwrap_or_default());
    data
}

async fn bounded<T>(
    kind: &'static str,
    name: &str,
    call: impl Future<Output = kube::Result<T>>,
) -> Result<T, TriggerError> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(TriggerError::Read {
            kind,
            name: name.to_owned(),
            message: e.to_string(),
        }),
        Err(_) => Err(TriggerError::Read {
            kind,
            name: name.to_owned(),
            message: format!("no answer within {API_TIMEOUT:?}"),
        }),
    }
}
