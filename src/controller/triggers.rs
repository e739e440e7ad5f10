//! Building a ScaledObject's scalers from the cluster: the scale target's pod template (for
//! `<key>FromEnv`), the (Cluster)TriggerAuthentication and the Secrets and ConfigMaps both
//! name are fetched, then resolved by the same pure functions `tidescale check` uses.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::api::Api;
use tidescale_scalers::{MetricSpec, Scaler, build_scaler};

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

/// Build every trigger of `so`, whose target `target` has been resolved.
pub async fn build_triggers(
    client: &kube::Client,
    so: &ScaledObject,
    target: &Target,
    cluster_object_namespace: &str,
    timeout: Duration,
) -> Result<Vec<BuiltTrigger>, TriggerError> {
    let namespace = target.namespace.as_str();
    let pod = pod_template(client, target).await?;
    let mut built = Vec::with_capacity(so.spec.triggers.len());
    for (index, trigger) in so.spec.triggers.iter().enumerate() {
        let auth = trigger_auth(client, namespace, trigger).await?;
        let objects = fetch_objects(
            client,
            namespace,
            pod.as_ref(),
            auth.as_ref(),
            cluster_object_namespace,
        )
        .await?;
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
        let cfg = scaler_config(site, trigger, &env, &resolved, timeout);
        let scaler = build_scaler(&cfg)
            .await
            .map_err(|source| TriggerError::Scaler { index, source })?;
        let specs = scaler.metric_specs();
        built.push(BuiltTrigger {
            index,
            name: trigger.name.clone(),
            trigger_type: trigger.type_.clone(),
            scaler,
            specs,
        });
    }
    Ok(built)
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

/// Fetch every Secret and ConfigMap the pod template and the auth spec name.
async fn fetch_objects(
    client: &kube::Client,
    namespace: &str,
    pod: Option<&PodSpec>,
    auth: Option<&(TriggerAuthenticationSpec, bool)>,
    cluster_object_namespace: &str,
) -> Result<ObjectMaps, TriggerError> {
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
    for (ns, name) in dedup(secrets) {
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
    Ok(objects)
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
