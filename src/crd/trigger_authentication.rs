//! `TriggerAuthentication` (namespaced; `ta`, `triggerauth`) and
//! `ClusterTriggerAuthentication` (cluster-scoped; `cta`, `clustertriggerauth`): where a
//! trigger's secrets come from. Both share one spec (`reference/keda.md` §1.3); every source
//! fills the scaler's auth params under its `parameter` name.
//!
//! Only references live here — never a secret value — so these types print safely.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth_sources::{
    AwsSecretManager, AzureKeyVault, GcpSecretManager, OAuth2, VaultCredential, VaultSecret,
};

/// Spec of a TriggerAuthentication.
#[allow(
    clippy::duplicated_attributes,
    reason = "kube-derive takes one printcolumn(...) per column; each repeats `type_`"
)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "TriggerAuthentication",
    namespaced,
    shortname = "ta",
    shortname = "triggerauth",
    status = "TriggerAuthenticationStatus",
    printcolumn(
        name = "PodIdentity",
        type_ = "string",
        json_path = ".spec.podIdentity.provider"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".spec.secretTargetRef[*].name"
    ),
    printcolumn(name = "Env", type_ = "string", json_path = ".spec.env[*].name"),
    printcolumn(
        name = "VaultAddress",
        type_ = "string",
        json_path = ".spec.hashiCorpVault.address"
    ),
    printcolumn(
        name = "ScaledObjects",
        type_ = "string",
        json_path = ".status.scaledobjects",
        priority = 1
    ),
    printcolumn(
        name = "ScaledJobs",
        type_ = "string",
        json_path = ".status.scaledjobs",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[kube(derive = "Default", derive = "PartialEq")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerAuthenticationSpec {
    /// Workload identity of a cloud provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<AuthPodIdentity>,
    /// Keys of Secrets in the object's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_target_ref: Vec<AuthTargetRef>,
    /// Keys of ConfigMaps in the object's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_target_ref: Vec<AuthTargetRef>,
    /// Env vars of the scale target's containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<AuthEnvironment>,
    /// A JSON map file under the operator's `--filepath-auth-root-path` (cluster-scoped only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// HashiCorp Vault secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashi_corp_vault: Option<HashiCorpVault>,
    /// Azure Key Vault secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVault>,
    /// GCP Secret Manager secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_secret_manager: Option<GcpSecretManager>,
    /// AWS Secrets Manager secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_manager: Option<AwsSecretManager>,
    /// Tokens of ServiceAccounts, requested by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_service_account_token: Vec<BoundServiceAccountToken>,
    /// OAuth2 client-credentials settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
}

/// `spec.podIdentity`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthPodIdentity {
    /// `azure-workload`, `gcp`, `aws`, `aws-eks` (deprecated) or `none`.
    pub provider: PodIdentityProvider,
    /// Client id of the identity (Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<String>,
    /// Tenant of the identity (Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_tenant_id: Option<String>,
    /// Authority host (Azure sovereign clouds); needs `identityTenantId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_authority_host: Option<String>,
    /// IAM role to assume (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// External id for the role (AWS); needs `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_i_d: Option<String>,
    /// `keda` or `workload`: whose identity is used (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_owner: Option<IdentityOwner>,
}

/// `spec.podIdentity.provider`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodIdentityProvider {
    /// No identity.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Azure AD workload identity.
    #[serde(rename = "azure-workload")]
    AzureWorkload,
    /// GCP workload identity.
    #[serde(rename = "gcp")]
    Gcp,
    /// AWS IRSA / pod identity.
    #[serde(rename = "aws")]
    Aws,
    /// Deprecated alias of `aws`.
    #[serde(rename = "aws-eks")]
    AwsEks,
}

impl PodIdentityProvider {
    /// KEDA's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AzureWorkload => "azure-workload",
            Self::Gcp => "gcp",
            Self::Aws => "aws",
            Self::AwsEks => "aws-eks",
        }
    }
}

/// `spec.podIdentity.identityOwner`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum IdentityOwner {
    /// The operator's identity.
    Keda,
    /// The workload's identity.
    Workload,
}

/// `secretTargetRef[]` / `configMapTargetRef[]`: one key of a Secret or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthTargetRef {
    /// Auth parameter filled, e.g. `host`.
    pub parameter: String,
    /// Name of the Secret or ConfigMap.
    pub name: String,
    /// Key inside it.
    pub key: String,
}

/// `env[]`: an env var of the scale target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthEnvironment {
    /// Auth parameter filled.
    pub parameter: String,
    /// Env var name.
    pub name: String,
    /// Container to read it from; the first container when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

/// `spec.hashiCorpVault`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashiCorpVault {
    /// Vault address.
    pub address: String,
    /// `token` or `kubernetes`.
    pub authentication: String,
    /// Role for `kubernetes` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Auth mount path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Vault namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Token or service-account credential references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<VaultCredential>,
    /// Secrets to read.
    pub secrets: Vec<VaultSecret>,
}

/// `boundServiceAccountToken[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BoundServiceAccountToken {
    /// Auth parameter filled.
    pub parameter: String,
    /// ServiceAccount whose token is requested.
    pub service_account_name: String,
}

/// Status of a (Cluster)TriggerAuthentication: who uses it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationStatus {
    /// Comma-separated ScaledObject names.
    #[serde(
        rename = "scaledobjects",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scaled_objects: Option<String>,
    /// Comma-separated ScaledJob names.
    #[serde(
        rename = "scaledjobs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scaled_jobs: Option<String>,
}

/// `ClusterTriggerAuthentication`: the same spec, cluster-scoped.
pub mod cluster {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// Spec of a ClusterTriggerAuthentication; identical to a TriggerAuthentication's.
    #[allow(
        clippy::duplicated_attributes,
        reason = "kube-derive takes one printcolumn(...) per column; each repeats `type_`"
    )]
    #[derive(
        CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
    )]
    #[kube(
        group = "keda.sh",
        version = "v1alpha1",
        kind = "ClusterTriggerAuthentication",
        shortname = "cta",
        shortname = "clustertriggerauth",
        status = "super::TriggerAuthenticationStatus",
        printcolumn(
            name = "PodIdentity",
            type_ = "string",
            json_path = ".spec.podIdentity.provider"
        ),
        printcolumn(
            name = "Secret",
            type_ = "string",
            json_path = ".spec.secretTargetRef[*].name"
        ),
        printcolumn(name = "Env", type_ = "string", json_path = ".spec.env[*].name"),
        printcolumn(name = "FilePath", type_ = "string", json_path = ".spec.filePath"),
        printcolumn(
            name = "VaultAddress",
            type_ = "string",
            json_path = ".spec.hashiCorpVault.address"
        ),
        printcolumn(
            name = "ScaledObjects",
            type_ = "string",
            json_path = ".status.scaledobjects",
            priority = 1
        ),
        printcolumn(
            name = "ScaledJobs",
            type_ = "string",
            json_path = ".status.scaledjobs",
            priority = 1
        ),
        printcolumn(
            name = "Age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )]
    #[kube(derive = "Default", derive = "PartialEq")]
    #[serde(transparent)]
    pub struct ClusterTriggerAuthenticationSpec(pub super::TriggerAuthenticationSpec);
}
