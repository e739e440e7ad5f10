//! Cloud transports of the Prometheus scaler (spec/scalers.md §5.2), used only when `authModes`
//! is empty:
//!
//! | provider | when | what is sent |
//! |---|---|---|
//! | Azure Monitor managed Prometheus | `podIdentity.provider: azure-workload` | `Authorization: Bearer` AAD token for the scope of `cloud` (`azureManagedPrometheusResourceURL` with `cloud: Private`) |
//! | Google Managed Prometheus | `podIdentity.provider: gcp` | `Authorization: Bearer` token from the GKE metadata server, scope `monitoring.read` |
//! | Amazon Managed Prometheus, static keys | `awsRegion` set | SigV4 (service `aps`) with `awsAccessKeyID`/`awsSecretAccessKey`/`awsSessionToken` |
//! | Amazon Managed Prometheus, operator identity | `awsRegion` and `podIdentity.provider: aws`/`aws-eks` or `identityOwner: operator` | SigV4 with the operator's `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else IRSA: STS `AssumeRoleWithWebIdentity` with `AWS_ROLE_ARN` and the token in `AWS_WEB_IDENTITY_TOKEN_FILE` |
//! | Amazon Managed Prometheus, assume role | `awsRegion` and authParams `awsRoleArn` | SigV4 with credentials from STS `AssumeRole` (SigV4, service `sts`), based on `awsAccessKeyID`/`awsSecretAccessKey` when given, else on the operator's identity (as KEDA's default credential chain) |
//!
//! STS is reached at `https://sts.<awsRegion>.amazonaws.com/` or `AWS_ENDPOINT_URL_STS`
//! ([`crate::aws_sts`]). Tokens and STS credentials are cached until shortly before expiry
//! and shared by every trigger with the same identity (Azure: [`crate::azure_ad::TokenSource`];
//! GCP: [`GcpTokenSource`]; AWS: [`crate::aws_sts::StsCredentials`], refreshed 5 minutes
//! before `Expiration`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::aws_sts::{Credentials, StsCredentials};
use crate::azure_ad::{self, TOKEN_REFRESH_MARGIN, TokenSource, WorkloadIdentity};
use crate::metadata::{AUTH, Params};
use crate::naming::query_escape;
use crate::pool::Shared;
use crate::pool::http::{self, HttpClient, HttpKey, TlsSettings};
use crate::sigv4::{self, AwsCredentials, PROMETHEUS_SERVICE};

/// Azure Monitor managed Prometheus scopes per `cloud` (case-insensitive).
pub const AZURE_CLOUDS: &[(&str, &str)] = &[
    (
        "AzurePublicCloud",
        "https://prometheus.monitor.azure.com/.default",
    ),
    (
        "AzureUSGovernmentCloud",
        "https://prometheus.monitor.azure.us/.default",
    ),
    (
        "AzureChinaCloud",
        "https://prometheus.monitor.azure.cn/.default",
    ),
];
/// The OAuth scope Google Managed Prometheus queries need.
pub const GCP_SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";
/// The GKE metadata server, unless `GCE_METADATA_HOST` names another `host[:port]`.
pub const GCP_METADATA_HOST: &str = "metadata.google.internal";

/// Which cloud transport a trigger uses (parsed, no I/O).
#[derive(Debug, Clone, PartialEq)]
pub enum Cloud {
    /// Plain requests.
    None,
    /// Azure AD bearer token for `scope`.
    Azure {
        /// The AAD scope (resource URL with `/.default`).
        scope: String,
    },
    /// GCP metadata-server bearer token.
    Gcp,
    /// SigV4 for `region`.
    Aws {
        /// `awsRegion`.
        region: String,
        /// Where the access keys come from.
        credentials: AwsSource,
    },
}

/// Where SigV4 credentials come from.
#[derive(Debug, Clone)]
pub enum AwsSource {
    /// `awsAccessKeyID` + `awsSecretAccessKey` (+ `awsSessionToken`) from authParams.
    Static(AwsCredentials),
    /// The operator's own `AWS_*` environment (`podIdentity.provider: aws`, or
    /// `identityOwner: operator`): static keys, else web identity (IRSA).
    Operator,
    /// STS `AssumeRole` of `role_arn` (authParams `awsRoleArn`) with `base` credentials.
    AssumeRole {
        /// `awsRoleArn`.
        role_arn: String,
        /// The credentials that assume the role.
        base: Box<AwsSource>,
    },
}

impl PartialEq for AwsSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Static(a), Self::Static(b)) => {
                a.access_key_id == b.access_key_id
                    && a.secret_access_key.expose_secret() == b.secret_access_key.expose_secret()
            }
            (Self::Operator, Self::Operator) => true,
            (
                Self::AssumeRole { role_arn, base },
                Self::AssumeRole {
                    role_arn: other_arn,
                    base: other_base,
                },
            ) => role_arn == other_arn && base == other_base,
            _ => false,
        }
    }
}

/// The cloud transport for a trigger without `authModes`; problems are recorded in `p`.
pub fn parse(p: &mut Params<'_>, aws_region: Option<String>) -> Cloud {
    let provider = p
        .config()
        .pod_identity
        .as_ref()
        .map(|i| i.provider.trim().to_owned())
        .unwrap_or_default();
    let cloud = p.key("cloud").string();
    let private_resource = p.key("azureManagedPrometheusResourceURL").string();
    let owner = p.key("identityOwner").one_of(&["pod", "operator"]).string();
    let via_operator =
        matches!(provider.as_str(), "aws" | "aws-eks") || owner.as_deref() == Some("operator");
    match provider.as_str() {
        "azure-workload" | "gcp" if aws_region.is_some() => {
            p.invalid(format!(
                "awsRegion cannot be combined with podIdentity provider {provider}"
            ));
            Cloud::None
        }
        "azure-workload" => match azure_scope(cloud.as_deref(), private_resource) {
            Ok(scope) => Cloud::Azure { scope },
            Err(message) => {
                p.invalid(message);
                Cloud::None
            }
        },
        "gcp" => Cloud::Gcp,
        _ => match aws_region {
            None => Cloud::None,
            Some(region) if via_operator => Cloud::Aws {
                region,
                credentials: AwsSource::Operator,
            },
            Some(region) => match aws_static(p) {
                Some(credentials) => Cloud::Aws {
                    region,
                    credentials,
                },
                None => Cloud::None,
            },
        },
    }
}

/// The AAD scope for `cloud` (default public), or the private resource URL.
fn azure_scope(cloud: Option<&str>, private_resource: Option<String>) -> Result<String, String> {
    let cloud = cloud.unwrap_or(AZURE_CLOUDS[0].0);
    if cloud.eq_ignore_ascii_case("Private") {
        return private_resource.ok_or_else(|| {
            "parameter \"azureManagedPrometheusResourceURL\" is required in metadata for cloud \
             Private"
                .to_owned()
        });
    }
    AZURE_CLOUDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(cloud))
        .map(|(_, scope)| (*scope).to_owned())
        .ok_or_else(|| {
            let known: Vec<&str> = AZURE_CLOUDS.iter().map(|(n, _)| *n).collect();
            format!(
                "parameter \"cloud\" value {cloud:?} must be one of [{}, Private]",
                known.join(", ")
            )
        })
}

/// Static keys from authParams, or `awsRoleArn` assumed with them (else with the operator's
/// identity, as KEDA's default credential chain); a missing pair is recorded in `p`.
fn aws_static(p: &mut Params<'_>) -> Option<AwsSource> {
    let role_arn = p.key("awsRoleArn").sources(AUTH).string();
    let id = p
        .key("awsAccessKeyID")
        .alias("awsAccessKeyId")
        .sources(AUTH)
        .string();
    let secret = p.key("awsSecretAccessKey").sources(AUTH).secret();
    let session_token = p.key("awsSessionToken").sources(AUTH).secret();
    match (id, secret, role_arn) {
        (Some(access_key_id), Some(secret_access_key), role_arn) => {
            let keys = AwsSource::Static(AwsCredentials {
                access_key_id,
                secret_access_key,
                session_token,
            });
            Some(match role_arn {
                Some(role_arn) => AwsSource::AssumeRole {
                    role_arn,
                    base: Box::new(keys),
                },
                None => keys,
            })
        }
        (None, None, Some(role_arn)) => Some(AwsSource::AssumeRole {
            role_arn,
            base: Box::new(AwsSource::Operator),
        }),
        _ => {
            p.invalid(
                "awsAccessKeyID and awsSecretAccessKey are required in authParams with awsRegion \
                 (or podIdentity provider aws)",
            );
            None
        }
    }
}

/// A cloud transport ready to authorise requests.
#[derive(Debug)]
pub enum CloudAuth {
    /// Azure AD bearer tokens.
    Azure(Arc<TokenSource>),
    /// GCP metadata-server bearer tokens.
    Gcp(Arc<GcpTokenSource>),
    /// SigV4 with these credentials for `region`.
    Aws {
        /// `awsRegion`.
        region: String,
        /// The access keys, static or from STS.
        credentials: Credentials,
    },
}

/// Turn the parsed [`Cloud`] into a transport. `env` holds the operator's `AZURE_*`, `AWS_*`
/// and `GCE_METADATA_HOST` variables; `token_tls` is used for token endpoints. No I/O.
pub fn connect(
    cloud: &Cloud,
    pod: Option<&crate::PodIdentity>,
    env: &BTreeMap<String, String>,
    token_tls: &TlsSettings,
) -> Result<Option<CloudAuth>, String> {
    Ok(Some(match cloud {
        Cloud::None => return Ok(None),
        Cloud::Azure { scope } => {
            let identity = WorkloadIdentity::resolve(&pod.cloned().unwrap_or_default(), env)?;
            CloudAuth::Azure(TokenSource::shared(identity, scope, token_tls)?)
        }
        Cloud::Gcp => {
            let host = env
                .get("GCE_METADATA_HOST")
                .map(|h| h.trim())
                .filter(|h| !h.is_empty())
                .unwrap_or(GCP_METADATA_HOST);
            CloudAuth::Gcp(GcpTokenSource::shared(host, GCP_SCOPE)?)
        }
        Cloud::Aws {
            region,
            credentials,
        } => CloudAuth::Aws {
            region: region.clone(),
            credentials: aws_credentials(credentials, region, env, token_tls)?,
        },
    }))
}

/// The credentials `source` resolves to (STS providers are created, not called).
fn aws_credentials(
    source: &AwsSource,
    region: &str,
    env: &BTreeMap<String, String>,
    tls: &TlsSettings,
) -> Result<Credentials, String> {
    Ok(match source {
        AwsSource::Static(c) => Credentials::Static(c.clone()),
        AwsSource::Operator => operator_aws(region, env, tls)?,
        AwsSource::AssumeRole { role_arn, base } => {
            let base = aws_credentials(base, region, env, tls)
                .map_err(|e| format!("awsRoleArn: base credentials: {e}"))?;
            Credentials::Sts(StsCredentials::assume_role(
                region, role_arn, base, env, tls,
            )?)
        }
    })
}

/// The operator's own identity, in the AWS SDK's order: static `AWS_*` keys, else web
/// identity (IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`).
fn operator_aws(
    region: &str,
    env: &BTreeMap<String, String>,
    tls: &TlsSettings,
) -> Result<Credentials, String> {
    let get = |k: &str| {
        env.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret)) => Ok(Credentials::Static(AwsCredentials {
            access_key_id,
            secret_access_key: SecretString::from(secret),
            session_token: get("AWS_SESSION_TOKEN").map(SecretString::from),
        })),
        _ => match StsCredentials::web_identity(region, env, tls)? {
            Some(irsa) => Ok(Credentials::Sts(irsa)),
            None => Err(
                "podIdentity aws: the operator has neither AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY nor AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA)"
                    .to_owned(),
            ),
        },
    }
}

impl CloudAuth {
    /// Add the credentials to `request` within `deadline`.
    pub async fn authorize(
        &self,
        request: &mut reqwest::Request,
        deadline: Instant,
    ) -> Result<(), String> {
        let headers: Vec<(String, SecretString)> = match self {
            CloudAuth::Azure(source) => vec![bearer(source.token(deadline).await?)],
            CloudAuth::Gcp(source) => vec![bearer(source.token(deadline).await?)],
            CloudAuth::Aws {
                region,
                credentials,
            } => sigv4::sign(
                &credentials.get(deadline).await?,
                sigv4::Scope {
                    region,
                    service: PROMETHEUS_SERVICE,
                },
                request.method().as_str(),
                request.url(),
                &[],
                b"",
                SystemTime::now(),
            ),
        };
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| "invalid auth header name".to_owned())?;
            let mut value = reqwest::header::HeaderValue::from_str(value.expose_secret())
                .map_err(|_| format!("credential for header {name} is not a valid header value"))?;
            value.set_sensitive(true);
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }

    /// Forget a cached token after the server rejected it.
    pub async fn rejected(&self) {
        match self {
            CloudAuth::Azure(source) => source.forget().await,
            CloudAuth::Gcp(source) => source.forget().await,
            CloudAuth::Aws { credentials, .. } => credentials.forget().await,
        }
    }
}

fn bearer(token: SecretString) -> (String, SecretString) {
    (
        "authorization".to_owned(),
        SecretString::from(format!("Bearer {}", token.expose_secret())),
    )
}

/// Live GCP token sources by (metadata host, scope).
type GcpSources = Mutex<HashMap<(String, String), Weak<GcpTokenSource>>>;

/// Live GCP token sources, shared by every trigger with the same metadata host and scope.
static GCP_SOURCES: LazyLock<GcpSources> = LazyLock::new(Default::default);

/// An access token from the GCE/GKE metadata server (workload identity), cached until
/// shortly before expiry and shared per (metadata host, scope).
#[derive(Debug)]
pub struct GcpTokenSource {
    url: Url,
    http: Shared<HttpKey, HttpClient>,
    cache: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

impl GcpTokenSource {
    /// The source for `host` (`host[:port]`) and `scope`; no I/O.
    pub fn shared(host: &str, scope: &str) -> Result<Arc<Self>, String> {
        let key = (host.to_owned(), scope.to_owned());
        let mut sources = GCP_SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = sources.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let url = Url::parse(&format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
            query_escape(scope)
        ))
        .map_err(|_| "GCE_METADATA_HOST is not a valid host".to_owned())?;
        let http = http::acquire(&url, &TlsSettings::default())?;
        let source = Arc::new(Self {
            url,
            http,
            cache: Default::default(),
        });
        sources.insert(key, Arc::downgrade(&source));
        Ok(source)
    }

    /// Drop the cached token.
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// A valid token, fetched only when the cached one is missing or close to expiry.
    pub async fn token(&self, deadline: Instant) -> Result<SecretString, String> {
        let mut cached = self.cache.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + TOKEN_REFRESH_MARGIN.min(Duration::from_secs(60)) < *expires
        {
            return Ok(token.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("gcp metadata token request timed out".to_owned());
        }
        let request = self
            .http
            .client()
            .reqwest()
            .get(self.url.clone())
            .header("Metadata-Flavor", "Google");
        let (status, body) = self
            .http
            .client()
            .send(request, left)
            .await
            .map_err(|e| format!("gcp metadata token request: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "gcp metadata token request: HTTP {}",
                status.as_u16()
            ));
        }
        let (token, lifetime) =
            azure_ad::parse_token_reply(&body).map_err(|e| format!("gcp metadata {e}"))?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

#[cfg(test)]
#[path = "cloud_tests.rs"]
mod tests;
