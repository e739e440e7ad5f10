//! The secret-store sources of a TriggerAuthentication (Vault, Azure Key Vault, GCP Secret
//! Manager, AWS Secrets Manager, OAuth2), typed so the CRD schema is structural and a typo in
//! a field name is reported instead of ignored. Field names are KEDA's.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A `valueFrom.secretKeyRef` wrapper, as KEDA nests client secrets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueFromSecret {
    /// Where the value comes from.
    pub value_from: SecretKeySource,
}

/// `valueFrom`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySource {
    /// The Secret key holding the value.
    pub secret_key_ref: SecretKeyRef,
}

/// `secretKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// `hashiCorpVault.secrets[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultSecret {
    /// Auth parameter filled.
    pub parameter: String,
    /// Secret path.
    pub path: String,
    /// Key inside the secret.
    pub key: String,
    /// `""`, `secretV2`, `secret` or `pki`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Certificate request for `pki` secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki_data: Option<VaultPkiData>,
}

/// `hashiCorpVault.secrets[].pkiData`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultPkiData {
    /// Certificate common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// DNS subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_names: Option<String>,
    /// IP subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_sans: Option<String>,
    /// URI subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_sans: Option<String>,
    /// Other subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_sans: Option<String>,
    /// Requested lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Encoding of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// `hashiCorpVault.credential`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultCredential {
    /// Vault token for `token` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Path of a service-account token file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// ServiceAccount whose bound token is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// `spec.azureKeyVault`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureKeyVault {
    /// Vault URI.
    pub vault_uri: String,
    /// Secrets to read.
    pub secrets: Vec<AzureKeyVaultSecret>,
    /// Service-principal credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AzureKeyVaultCredentials>,
    /// Workload identity to use instead of credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<super::AuthPodIdentity>,
    /// Sovereign-cloud endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<AzureKeyVaultCloud>,
}

/// `azureKeyVault.secrets[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureKeyVaultSecret {
    /// Auth parameter filled.
    pub parameter: String,
    /// Secret name in the vault.
    pub name: String,
    /// Secret version; latest when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `azureKeyVault.credentials`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureKeyVaultCredentials {
    /// Application (client) id.
    pub client_id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Client secret reference.
    pub client_secret: ValueFromSecret,
}

/// `azureKeyVault.cloud`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureKeyVaultCloud {
    /// `AzurePublicCloud`, `AzureUSGovernmentCloud`, `AzureChinaCloud`, `Private`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Key Vault resource URL (`Private` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_resource_u_r_l: Option<String>,
    /// Active Directory endpoint (`Private` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_directory_endpoint: Option<String>,
}

/// `spec.gcpSecretManager`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpSecretManager {
    /// Secrets to read.
    pub secrets: Vec<GcpSecret>,
    /// Service-account key reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GcpCredentials>,
    /// Workload identity to use instead of credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<super::AuthPodIdentity>,
}

/// `gcpSecretManager.secrets[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpSecret {
    /// Auth parameter filled.
    pub parameter: String,
    /// Secret id.
    pub id: String,
    /// Secret version; latest when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `gcpSecretManager.credentials`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpCredentials {
    /// Service-account key reference.
    pub client_secret: ValueFromSecret,
}

/// `spec.awsSecretManager`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSecretManager {
    /// Secrets to read.
    pub secrets: Vec<AwsSecret>,
    /// Access-key references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AwsCredentials>,
    /// Workload identity to use instead of credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<super::AuthPodIdentity>,
    /// AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `awsSecretManager.secrets[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSecret {
    /// Auth parameter filled.
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Secret version id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Secret version stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_stage: Option<String>,
    /// Key inside a JSON secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// `awsSecretManager.credentials`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsCredentials {
    /// Access key id reference.
    pub access_key: ValueFromSecret,
    /// Secret access key reference.
    pub access_secret_key: ValueFromSecret,
    /// Session token reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<ValueFromSecret>,
}

/// `spec.oauth2`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2 {
    /// Only `clientCredentials` exists.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client secret reference.
    pub client_secret: ValueFromSecret,
    /// Token endpoint (http or https).
    pub token_url: String,
    /// Scopes requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Extra form parameters for the token request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_url_params: BTreeMap<String, String>,
}
