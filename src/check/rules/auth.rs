//! (Cluster)TriggerAuthentication rules of KEDA's webhook: pod identity fields that only make
//! sense together, OAuth2 settings, and `filePath` only where it is supported.

use crate::check::report::Problems;
use crate::crd::{IdentityOwner, PodIdentityProvider, TriggerAuthenticationSpec};

/// Every (Cluster)TriggerAuthentication rule.
pub fn trigger_authentication(
    spec: &TriggerAuthenticationSpec,
    cluster_scoped: bool,
    problems: &mut Problems,
) {
    if spec.file_path.is_some() && !cluster_scoped {
        problems.add(
            ".spec.filePath",
            "filePath is only supported by ClusterTriggerAuthentication",
        );
    }
    if let Some(path) = spec.file_path.as_deref()
        && (path.starts_with('/') || path.split('/').any(|part| part == ".."))
    {
        problems.add(
            ".spec.filePath",
            format!("Invalid value: {path:?}: must be a relative path without \"..\""),
        );
    }
    check_pod_identity(spec, problems);
    check_oauth2(spec, problems);
}

fn check_pod_identity(spec: &TriggerAuthenticationSpec, problems: &mut Problems) {
    let Some(identity) = &spec.pod_identity else {
        return;
    };
    let base = ".spec.podIdentity";
    if identity
        .identity_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        problems.add(
            format!("{base}.identityId"),
            "Invalid value: \"\": identityId must not be empty when set",
        );
    }
    let tenant = identity
        .identity_tenant_id
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    let authority = identity
        .identity_authority_host
        .as_deref()
        .is_some_and(|a| !a.is_empty());
    if authority && !tenant && identity.provider == PodIdentityProvider::AzureWorkload {
        problems.add(
            format!("{base}.identityTenantId"),
            "Required value: identityAuthorityHost needs identityTenantId",
        );
    }
    let role_arn = identity.role_arn.as_deref().is_some_and(|r| !r.is_empty());
    if role_arn && identity.identity_owner == Some(IdentityOwner::Workload) {
        problems.add(
            format!("{base}.roleArn"),
            "roleArn can only be set when identityOwner is \"keda\"",
        );
    }
    if identity
        .external_i_d
        .as_deref()
        .is_some_and(|e| !e.is_empty())
        && !role_arn
    {
        problems.add(format!("{base}.externalID"), "externalID requires roleArn");
    }
}

fn check_oauth2(spec: &TriggerAuthenticationSpec, problems: &mut Problems) {
    let Some(oauth2) = &spec.oauth2 else { return };
    let base = ".spec.oauth2";
    if let Some(kind) = oauth2
        .type_
        .as_deref()
        .filter(|t| !t.is_empty() && *t != "clientCredentials")
    {
        problems.add(
            format!("{base}.type"),
            format!("Unsupported value: {kind:?}: supported values: \"clientCredentials\""),
        );
    }
    if oauth2.client_id.trim().is_empty() {
        problems.add(format!("{base}.clientId"), "Required value");
    }
    let url = oauth2.token_url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        problems.add(
            format!("{base}.tokenUrl"),
            format!("Invalid value: {url:?}: must be an http or https URL"),
        );
    }
}
