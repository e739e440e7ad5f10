//! Auth params of a (Cluster)TriggerAuthentication (`spec/scalers.md` §1.3, "Auth params"),
//! filled in KEDA's order — env, configMapTargetRef, secretTargetRef, the secret stores,
//! bound tokens, OAuth2 — a later source overwriting an earlier one with the same parameter.
//!
//! Sources that need a cloud or the API server's token endpoint (Vault, the cloud secret
//! managers, bound ServiceAccount tokens, `filePath`) cannot be read here: their parameters
//! are [`Resolved::Unknown`], and `filePath`, which may define any parameter, marks the
//! result open.

use k8s_openapi::api::core::v1::PodSpec;

use super::env::resolve_env;
use super::{Lookup, Objects, ResolveError, Resolved, ValueMap};
use crate::crd::{AuthPodIdentity, AuthTargetRef, TriggerAuthenticationSpec};

/// What a trigger's `authenticationRef` resolves to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedAuth {
    /// Params by name.
    pub params: ValueMap,
    /// Params beyond `params` may exist (a `filePath` source not read offline).
    pub open: bool,
    /// `spec.podIdentity`, passed through to the scaler.
    pub pod_identity: Option<AuthPodIdentity>,
}

/// Where a TriggerAuthentication's references are read.
#[derive(Debug, Clone, Copy)]
pub struct AuthContext<'a> {
    /// Namespace of Secrets and ConfigMaps it names: the object's own for a
    /// TriggerAuthentication, the operator's cluster-object namespace for a cluster one.
    pub namespace: &'a str,
    /// Whether it is a ClusterTriggerAuthentication.
    pub cluster_scoped: bool,
    /// Namespace of the scale target (for `env[]` sources).
    pub target_namespace: &'a str,
    /// The scale target's pod template, when known (for `env[]` sources).
    pub target_pod: Option<&'a PodSpec>,
}

/// Resolve `spec` in `ctx`.
pub fn resolve_auth(
    spec: &TriggerAuthenticationSpec,
    ctx: AuthContext<'_>,
    objects: &dyn Objects,
) -> Result<ResolvedAuth, ResolveError> {
    let mut auth = ResolvedAuth {
        pod_identity: spec.pod_identity.clone(),
        ..ResolvedAuth::default()
    };
    for source in &spec.env {
        auth.params.insert(
            &source.parameter,
            env_param(
                &ctx,
                source.container_name.as_deref(),
                &source.name,
                objects,
            ),
        );
    }
    if spec.file_path.is_some() {
        if !ctx.cluster_scoped {
            return Err(ResolveError::FilePathNotSupported);
        }
        // The file replaces everything and is only readable inside the operator's pod.
        auth.params = ValueMap::default();
        auth.open = true;
        return Ok(auth);
    }
    for target in &spec.config_map_target_ref {
        auth.params.insert(
            &target.parameter,
            key_param(objects.config_map(ctx.namespace, &target.name), target),
        );
    }
    for target in &spec.secret_target_ref {
        auth.params.insert(
            &target.parameter,
            key_param(objects.secret(ctx.namespace, &target.name), target),
        );
    }
    for parameter in unresolvable_parameters(spec) {
        auth.params.insert(parameter, Resolved::Unknown);
    }
    if let Some(oauth2) = &spec.oauth2 {
        auth.params
            .insert("oauthTokenURI", Resolved::Known(oauth2.token_url.clone()));
        auth.params
            .insert("clientID", Resolved::Known(oauth2.client_id.clone()));
        let secret = &oauth2.client_secret.value_from.secret_key_ref;
        let target = AuthTargetRef {
            parameter: String::new(),
            name: secret.name.clone(),
            key: secret.key.clone(),
        };
        auth.params.insert(
            "clientSecret",
            key_param(objects.secret(ctx.namespace, &secret.name), &target),
        );
        if !oauth2.scopes.is_empty() {
            auth.params
                .insert("scopes", Resolved::Known(oauth2.scopes.join(",")));
        }
        if !oauth2.token_url_params.is_empty() {
            let query: Vec<String> = oauth2
                .token_url_params
                .iter()
                .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
                .collect();
            auth.params
                .insert("endpointParams", Resolved::Known(query.join("&")));
        }
    }
    Ok(auth)
}

/// `env[]`: the env var of the named (or first) container; `""` when it cannot be resolved.
fn env_param(
    ctx: &AuthContext<'_>,
    container: Option<&str>,
    name: &str,
    objects: &dyn Objects,
) -> Resolved {
    let Some(pod) = ctx.target_pod else {
        return Resolved::Unknown;
    };
    match resolve_env(ctx.target_namespace, pod, container, objects) {
        Ok(env) => match env.values.get(name) {
            Some(value) => value.clone(),
            None if env.open => Resolved::Unknown,
            None => Resolved::Known(String::new()),
        },
        Err(_) => Resolved::Known(String::new()),
    }
}

/// A key of a Secret or ConfigMap; `""` when the object or key is missing, as KEDA does.
fn key_param(lookup: Lookup, target: &AuthTargetRef) -> Resolved {
    match lookup {
        Lookup::Found(data) => Resolved::Known(data.get(&target.key).cloned().unwrap_or_default()),
        Lookup::Missing => Resolved::Known(String::new()),
        Lookup::Unknown => Resolved::Unknown,
    }
}

/// Parameters of sources that need a cloud API or a token request.
fn unresolvable_parameters(spec: &TriggerAuthenticationSpec) -> Vec<&str> {
    let mut parameters = Vec::new();
    if let Some(vault) = &spec.hashi_corp_vault {
        parameters.extend(vault.secrets.iter().map(|s| s.parameter.as_str()));
    }
    if let Some(vault) = &spec.azure_key_vault {
        parameters.extend(vault.secrets.iter().map(|s| s.parameter.as_str()));
    }
    if let Some(manager) = &spec.gcp_secret_manager {
        parameters.extend(manager.secrets.iter().map(|s| s.parameter.as_str()));
    }
    if let Some(manager) = &spec.aws_secret_manager {
        parameters.extend(manager.secrets.iter().map(|s| s.parameter.as_str()));
    }
    parameters.extend(
        spec.bound_service_account_token
            .iter()
            .map(|t| t.parameter.as_str()),
    );
    parameters
}

/// `application/x-www-form-urlencoded` escaping, as Go's `url.Values.Encode`.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
