//! The adapter's serving certificate (`spec/kubernetes.md` §2.3, §2.9): a
//! [`ResolvesServerCert`] whose certificate can be swapped while connections keep arriving,
//! fed by one of two sources.
//!
//! - **Files** (`--tls-cert-file`/`--tls-private-key-file`, e.g. cert-manager): polled every few
//!   seconds by content, so a renewed certificate is served without a restart. A half-written
//!   or broken pair keeps the old certificate and logs a warning naming the file (never its
//!   contents).
//! - **Self-generated** ([`SelfSigned`]): a CA and a serving certificate for
//!   `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local` (plus localhost)
//!   kept in a `kubernetes.io/tls` Secret so every replica serves the same one; renewed 30 days
//!   before expiry (the CA is kept while it lasts, so `caBundle` stays stable); the CA is
//!   published in the metrics APIServices' `spec.caBundle`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::controller::target::within_api_timeout;

/// A certificate is renewed (or a stored one rejected) this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Lifetime of a generated serving certificate.
const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of a generated CA.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The APIServices whose `caBundle` the self-generated CA goes into.
pub const APISERVICES: [&str; 3] = [
    "v1beta1.external.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.custom.metrics.k8s.io",
];

/// A certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The material is not a usable certificate/key pair (`what` names its origin).
    #[error("{what}: {reason}")]
    Invalid {
        /// File name or Secret key.
        what: String,
        /// Why (never the material itself).
        reason: String,
    },
    /// Generating failed.
    #[error("generating the serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A Kubernetes call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was attempted.
        action: String,
        /// The error.
        source: kube::Error,
    },
}

fn invalid(what: &str, reason: impl ToString) -> CertError {
    CertError::Invalid {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// Builds a rustls key from a PEM chain and PEM private key (checks that they match).
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("invalid certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(what, "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid(what, format!("invalid private key PEM: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(what, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| invalid(what, format!("certificate and key do not match: {e}")))?;
    Ok(certified)
}

/// The serving certificate in force; swapped by the sources, read by every handshake.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    /// Serves `key` until replaced.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Serves the PEM pair until replaced.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, CertError> {
        certified_key(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            "serving certificate",
        )
        .map(Self::new)
    }

    /// The certificate in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the certificate; new handshakes present it.
    pub fn set(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut guard) => *guard = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

// ---------------------------------------------------------------------------------------------
// Files

async fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    let err = |reason: String| CertError::Read {
        path: path.to_owned(),
        reason,
    };
    match tokio::time::timeout(Duration::from_secs(5), tokio::fs::read(path)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err("timed out".into())),
    }
}

/// Reads and checks a certificate/key file pair.
pub async fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let (cert_pem, key_pem) = (read(cert).await?, read(key).await?);
    let what = format!("{} / {}", cert.display(), key.display());
    certified_key(&cert_pem, &key_pem, &what)
}

/// Re-reads the pair every `interval` until `cancel`; a changed, valid pair replaces the
/// certificate in `serving`. A broken pair is reported once per distinct content.
pub async fn watch_files(
    serving: Arc<ServingCert>,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let contents = match (read(&cert).await, read(&key).await) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "keeping the current serving certificate");
                continue;
            }
        };
        if last.as_ref() == Some(&contents) {
            continue;
        }
        let what = format!("{} / {}", cert.display(), key.display());
        match certified_key(&contents.0, &contents.1, &what) {
            Ok(certified) => {
                // The first round only records what `load_files` already served.
                if last.is_some() {
                    tracing::info!(cert_file = %cert.display(), "serving certificate reloaded");
                }
                serving.set(certified);
            }
            Err(error) => tracing::warn!(%error, "keeping the current serving certificate"),
        }
        last = Some(contents);
    }
}

// ---------------------------------------------------------------------------------------------
// Self-generated

/// A CA and a serving certificate, PEM, as stored in the Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// CA certificate (`ca.crt`).
    pub ca_pem: String,
    /// CA key (`ca.key`; lets a renewal keep the CA).
    pub ca_key_pem: String,
    /// Serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// Serving key (`tls.key`).
    pub key_pem: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds until the PEM certificate expires, if it parses and names `required_dns`.
fn remaining_validity(cert_pem: &str, required_dns: Option<&str>) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    if let Some(dns) = required_dns {
        let san = cert.subject_alternative_name().ok()??;
        let named = san.value.general_names.iter().any(|n| {
            matches!(n, x509_parser::extensions::GeneralName::DNSName(d) if d.eq_ignore_ascii_case(dns))
        });
        if !named {
            return None;
        }
    }
    Some(cert.validity().not_after.timestamp() - unix_now())
}

fn datetime(offset: Duration) -> Result<time::OffsetDateTime, CertError> {
    let secs = unix_now().saturating_add(i64::try_from(offset.as_secs()).unwrap_or(0));
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| invalid("certificate validity", e))
}

impl Bundle {
    /// Whether the serving certificate is valid for `dns` for at least [`RENEW_BEFORE`] and
    /// the pair is usable.
    pub fn fresh_for(&self, dns: &str) -> bool {
        let min = i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX);
        remaining_validity(&self.cert_pem, Some(dns)).is_some_and(|left| left >= min)
            && remaining_validity(&self.ca_pem, None).is_some_and(|left| left >= min)
            && self.certified_key().is_ok()
    }

    /// The serving pair as rustls wants it.
    pub fn certified_key(&self) -> Result<CertifiedKey, CertError> {
        certified_key(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            "tls.crt / tls.key",
        )
    }

    /// Issues a serving certificate for `dns_names`, reusing `previous`'s CA while it has more
    /// than a year left, otherwise with a new CA.
    pub fn generate(dns_names: &[String], previous: Option<&Bundle>) -> Result<Self, CertError> {
        let year = i64::try_from(SERVING_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        let reusable = previous.filter(|p| {
            remaining_validity(&p.ca_pem, None).is_some_and(|left| left > year)
                && !p.ca_key_pem.is_empty()
        });
        let (ca_pem, ca_key) = match reusable {
            Some(p) => (p.ca_pem.clone(), KeyPair::from_pem(&p.ca_key_pem)?),
            None => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params
                    .distinguished_name
                    .push(DnType::CommonName, "tidescale-metrics-apiserver-ca");
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                params.not_before = datetime(Duration::ZERO)? - time::Duration::hours(1);
                params.not_after = datetime(CA_LIFETIME)?;
                (params.self_signed(&key)?.pem(), key)
            }
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(
            DnType::CommonName,
            dns_names.first().map_or("localhost", String::as_str),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = datetime(Duration::ZERO)? - time::Duration::hours(1);
        params.not_after = datetime(SERVING_LIFETIME)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Self {
            ca_key_pem: ca_key.serialize_pem(),
            ca_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .unwrap_or_default()
        };
        Some(Self {
            ca_pem: get("ca.crt"),
            ca_key_pem: get("ca.key"),
            cert_pem: get("tls.crt"),
            key_pem: get("tls.key"),
        })
    }

    fn to_secret(&self, namespace: &str, name: &str, resource_version: Option<String>) -> Secret {
        let entry = |k: &str, v: &str| (k.to_owned(), ByteString(v.as_bytes().to_vec()));
        let mut secret = Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    entry("ca.crt", &self.ca_pem),
                    entry("ca.key", &self.ca_key_pem),
                    entry("tls.crt", &self.cert_pem),
                    entry("tls.key", &self.key_pem),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.namespace = Some(namespace.to_owned());
        secret.metadata.resource_version = resource_version;
        secret
    }
}

/// The self-generated certificate source.
#[derive(Clone)]
pub struct SelfSigned {
    /// Client for the Secret and the APIServices.
    pub client: kube::Client,
    /// Namespace of the Secret and the Service.
    pub namespace: String,
    /// Name of the Secret.
    pub secret_name: String,
    /// Name of the Service in front of the adapter.
    pub service_name: String,
    /// Write the CA into the APIServices' `caBundle`.
    pub publish_ca_bundle: bool,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("namespace", &self.namespace)
            .field("secret_name", &self.secret_name)
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> CertError {
    let action = action.into();
    move |source| CertError::Api { action, source }
}

impl SelfSigned {
    /// The DNS names the serving certificate is valid for.
    pub fn dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service_name, &self.namespace);
        vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
            "localhost".into(),
        ]
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The stored bundle if it is fresh, else a new one written to the Secret; when another
    /// replica writes first (409), its bundle wins.
    pub async fn ensure(&self) -> Result<Bundle, CertError> {
        let what = format!("reading Secret {}/{}", self.namespace, self.secret_name);
        let stored = within_api_timeout(self.secrets().get_opt(&self.secret_name))
            .await
            .map_err(api_err(what.clone()))?;
        let required = format!("{}.{}.svc", self.service_name, self.namespace);
        let previous = stored.as_ref().and_then(Bundle::from_secret);
        if let Some(bundle) = previous.as_ref().filter(|b| b.fresh_for(&required)) {
            return Ok(bundle.clone());
        }
        let bundle = Bundle::generate(&self.dns_names(), previous.as_ref())?;
        let pp = PostParams::default();
        let written = match &stored {
            None => {
                let secret = bundle.to_secret(&self.namespace, &self.secret_name, None);
                within_api_timeout(self.secrets().create(&pp, &secret)).await
            }
            Some(old) => {
                let rv = old.metadata.resource_version.clone();
                let secret = bundle.to_secret(&self.namespace, &self.secret_name, rv);
                within_api_timeout(self.secrets().replace(&self.secret_name, &pp, &secret)).await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %self.secret_name, namespace = %self.namespace, "serving certificate generated");
                Ok(bundle)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let winner = within_api_timeout(self.secrets().get(&self.secret_name))
                    .await
                    .map_err(api_err(what))?;
                Bundle::from_secret(&winner)
                    .filter(|b| b.fresh_for(&required))
                    .ok_or_else(|| {
                        invalid(
                            &self.secret_name,
                            "written concurrently with an unusable certificate",
                        )
                    })
            }
            Err(source) => Err(CertError::Api {
                action: format!("writing Secret {}/{}", self.namespace, self.secret_name),
                source,
            }),
        }
    }

    /// Writes `ca_pem` into every metrics APIService that exists and differs.
    pub async fn publish(&self, ca_pem: &str) -> Result<(), CertError> {
        let resource = ApiResource {
            group: "apiregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiregistration.k8s.io/v1".into(),
            kind: "APIService".into(),
            plural: "apiservices".into(),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        for name in APISERVICES {
            let current = within_api_timeout(api.get_opt(name))
                .await
                .map_err(api_err(format!("reading APIService {name}")))?;
            let Some(current) = current else {
                tracing::debug!(
                    apiservice = name,
                    "APIService not registered; caBundle not published"
                );
                continue;
            };
            if current
                .data
                .pointer("/spec/caBundle")
                .and_then(|v| v.as_str())
                == Some(encoded.as_str())
            {
                continue;
            }
            let patch = serde_json::json!({"spec": {"caBundle": encoded}});
            within_api_timeout(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
                .await
                .map_err(api_err(format!("patching APIService {name}")))?;
            tracing::info!(apiservice = name, "caBundle published");
        }
        Ok(())
    }

    /// Loads or generates the certificate, publishes the CA, and returns the resolver.
    pub async fn start(&self) -> Result<Arc<ServingCert>, CertError> {
        let bundle = self.ensure().await?;
        if self.publish_ca_bundle {
            self.publish(&bundle.ca_pem).await?;
        }
        Ok(ServingCert::new(bundle.certified_key()?))
    }

    /// Every `interval` until `cancel`: follows the Secret (another replica may have renewed
    /// it), renews before expiry and keeps the `caBundle` published.
    pub async fn maintain(
        self,
        serving: Arc<ServingCert>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        // `start` has just loaded and published: the first check comes one interval later.
        let mut served: Option<Bundle> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.ensure().await {
                Ok(bundle) => {
                    if served.as_ref() != Some(&bundle) {
                        match bundle.certified_key() {
                            Ok(key) => serving.set(key),
                            Err(error) => {
                                tracing::warn!(%error, "stored serving certificate unusable")
                            }
                        }
                    }
                    if self.publish_ca_bundle
                        && let Err(error) = self.publish(&bundle.ca_pem).await
                    {
                        tracing::warn!(%error, "publishing the caBundle");
                    }
                    served = Some(bundle);
                }
                Err(error) => tracing::warn!(%error, "maintaining the serving certificate"),
            }
        }
    }
}

/// How often certificate files are re-read.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often the self-generated certificate's Secret is re-checked (renewal, other replicas).
pub const SECRET_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The serving certificate the flags ask for, with its upkeep running in the background until
/// `cancel`: the files when `--tls-cert-file` is set (re-read every [`FILE_POLL_INTERVAL`]),
/// otherwise the self-generated one (checked every [`SECRET_CHECK_INTERVAL`]).
pub async fn from_args(
    args: &super::AdapterArgs,
    client: kube::Client,
    cancel: CancellationToken,
) -> Result<Arc<ServingCert>, CertError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_private_key_file) {
        let serving = ServingCert::new(load_files(cert, key).await?);
        let (cert, key) = (cert.clone(), key.clone());
        tokio::spawn(watch_files(
            serving.clone(),
            cert,
            key,
            FILE_POLL_INTERVAL,
            cancel,
        ));
        return Ok(serving);
    }
    let source = SelfSigned {
        client,
        namespace: args.pod_namespace.clone(),
        secret_name: args.cert_secret_name.clone(),
        service_name: args.adapter_service_name.clone(),
        publish_ca_bundle: !args.skip_ca_bundle_publish,
    };
    let serving = source.start().await?;
    tokio::spawn(source.maintain(serving.clone(), SECRET_CHECK_INTERVAL, cancel));
    Ok(serving)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["svc".into(), "svc.ns".into(), "svc.ns.svc".into()]
    }

    #[test]
    fn a_generated_bundle_is_fresh_for_its_service_only() {
        let bundle = Bundle::generate(&names(), None).unwrap();
        assert!(bundle.fresh_for("svc.ns.svc"));
        assert!(!bundle.fresh_for("other.ns.svc"));
        assert!(format!("{bundle:?}").len() < 20, "Debug never prints keys");
    }

    #[test]
    fn renewal_keeps_a_long_lived_ca() {
        let first = Bundle::generate(&names(), None).unwrap();
        let second = Bundle::generate(&names(), Some(&first)).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.cert_pem, second.cert_pem);
        assert!(second.certified_key().is_ok());
    }

    #[test]
    fn a_mismatched_pair_is_rejected_naming_its_origin() {
        let (a, b) = (
            Bundle::generate(&names(), None).unwrap(),
            Bundle::generate(&names(), None).unwrap(),
        );
        let err = certified_key(
            a.cert_pem.as_bytes(),
            b.key_pem.as_bytes(),
            "/etc/tls/tls.crt",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/tls/tls.crt") && err.contains("do not match"),
            "{err}"
        );
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
}
