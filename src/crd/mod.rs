//! The `keda.sh/v1alpha1` API tidescale serves, as Rust types, and the CRDs generated from
//! them.
//!
//! Field names, defaults, bounds, short names and printer columns are KEDA's, so manifests
//! written for KEDA apply unchanged. Spec structs deny unknown fields: a field KEDA's schema
//! does not declare is an error here rather than something silently dropped.

mod auth_sources;
mod common;
mod compact_map;
mod generate;
pub mod names;
mod scaled_job;
mod scaled_object;
mod shared_text;
mod trigger_authentication;

pub use auth_sources::{
    AwsCredentials, AwsSecret, AwsSecretManager, AzureKeyVault, AzureKeyVaultCloud,
    AzureKeyVaultCredentials, AzureKeyVaultSecret, GcpCredentials, GcpSecret, GcpSecretManager,
    OAuth2, SecretKeyRef, SecretKeySource, ValueFromSecret, VaultCredential, VaultPkiData,
    VaultSecret,
};
pub use common::{
    AUTHENTICATION_REF_KINDS, AuthenticationRef, Condition, GroupVersionKindResource, HealthStatus,
    ScaleTriggers, TriggerActivityStatus,
};
pub use compact_map::CompactMap;
pub use generate::{CrdKind, all_crds, crd_for_kind, crd_yaml, crds_yaml};
pub use scaled_job::{
    JobScalingStrategy, MultipleScalersCalculation, PropagationPolicy, Rollout, RolloutStrategy,
    ScaledJob, ScaledJobSpec, ScaledJobStatus, ScalingStrategy,
};
pub use scaled_object::{
    AdvancedConfig, Fallback, FallbackBehavior, HorizontalPodAutoscalerConfig, ModifierMetricType,
    ScaleTarget, ScaledObject, ScaledObjectSpec, ScaledObjectStatus, ScalingModifiers,
};
pub use shared_text::SharedText;
pub use trigger_authentication::cluster::{
    ClusterTriggerAuthentication, ClusterTriggerAuthenticationSpec,
};
pub use trigger_authentication::{
    AuthEnvironment, AuthPodIdentity, AuthTargetRef, BoundServiceAccountToken, HashiCorpVault,
    IdentityOwner, PodIdentityProvider, TriggerAuthentication, TriggerAuthenticationSpec,
    TriggerAuthenticationStatus,
};
