//! The delegated-authentication settings kube-apiserver publishes in
//! `kube-system/extension-apiserver-authentication` (`spec/kubernetes.md` §2.4), loaded and
//! watched, because the CAs in it rotate and Go extension servers pick that up live.
//!
//! The current value sits in an [`AuthConfigCell`]: readers take a cheap `Arc` snapshot per
//! handshake or request. A malformed update (bad PEM, bad JSON list) is rejected with an error
//! that names the key, and the previous configuration stays in force. Until the first valid
//! ConfigMap arrives, [`AuthConfigCell::loaded`] is false (readiness) and no client
//! certificate is trusted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::watcher;
use rustls::DistinguishedName;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::danger::ClientCertVerifier;
use tokio_util::sync::CancellationToken;

use super::peer::PeerCertificates;

/// Namespace of the authentication ConfigMap.
pub const AUTH_CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the authentication ConfigMap.
pub const AUTH_CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

/// A ConfigMap key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A PEM bundle holds no usable certificate.
    #[error("{AUTH_CONFIGMAP_NAME} key {key}: {reason}")]
    Pem {
        /// The ConfigMap key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A list-valued key is not a JSON array of strings.
    #[error("{AUTH_CONFIGMAP_NAME} key {key}: not a JSON array of strings: {source}")]
    List {
        /// The ConfigMap key.
        key: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// A set of trusted CAs: verifies client certificate chains (ClientAuth usage, validity).
///
/// Verdicts are remembered per chain: the aggregator presents the same front-proxy certificate
/// on every request, and re-checking its signature costs ~100 µs — most of an HPA read
/// (benches/adapter_latency.rs). A new CA bundle builds a new `TrustedCas`, so rotation drops
/// every verdict; a positive one never outlives the certificate or [`VERDICT_TTL`].
#[derive(Clone)]
pub struct TrustedCas {
    verifier: Arc<dyn ClientCertVerifier>,
    verdicts: Arc<Mutex<Verdicts>>,
}

/// Chain fingerprint → (verified, reusable until).
type Verdicts = HashMap<[u8; 32], (bool, Instant)>;

/// How long a verdict is reused at most.
const VERDICT_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is remembered (bounded CPU for repeated bad certificates).
const REFUSAL_TTL: Duration = Duration::from_secs(10);
/// Most verdicts kept; beyond, the table starts over.
const MAX_VERDICTS: usize = 1024;

impl std::fmt::Debug for TrustedCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedCas")
            .field("subjects", &self.verifier.root_hint_subjects().len())
            .finish()
    }
}

impl TrustedCas {
    /// Parses a PEM bundle; `key` names the ConfigMap key in errors.
    pub fn from_pem(key: &'static str, pem: &str) -> Result<Self, AuthConfigError> {
        let err = |reason: String| AuthConfigError::Pem { key, reason };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| err(format!("invalid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| err(format!("invalid CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(err("contains no certificate".into()));
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            verifier,
            verdicts: Arc::default(),
        })
    }

    /// Whether `peer`'s chain verifies against these CAs now, for client authentication.
    pub fn verifies(&self, peer: &PeerCertificates) -> bool {
        let Some((leaf, intermediates)) = peer.certs().split_first() else {
            return false;
        };
        let key = *peer.fingerprint();
        let now = Instant::now();
        if let Some((verdict, until)) = self.lock().get(&key).copied()
            && now < until
        {
            return verdict;
        }
        let verdict = self
            .verifier
            .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .is_ok();
        let until = if verdict {
            now + VERDICT_TTL.min(remaining_validity(leaf))
        } else {
            now + REFUSAL_TTL
        };
        let mut verdicts = self.lock();
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, (verdict, until));
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The CA subjects, hinted to clients in the TLS CertificateRequest.
    pub fn subjects(&self) -> &[DistinguishedName] {
        self.verifier.root_hint_subjects()
    }
}

/// The front-proxy (request header) authenticator's settings.
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    /// Signs the proxy's client certificate.
    pub cas: TrustedCas,
    /// Accepted client certificate CNs; empty = any CN the CA signed.
    pub allowed_names: Vec<String>,
    /// Headers carrying the user name (first non-empty wins).
    pub username_headers: Vec<String>,
    /// Headers carrying groups (every value of every header).
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying extra attributes.
    pub extra_headers_prefixes: Vec<String>,
    /// Headers carrying the user UID.
    pub uid_headers: Vec<String>,
}

/// The authentication settings in force.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `client-ca-file`: ordinary client certificates (CN user, O groups).
    pub client_cas: Option<TrustedCas>,
    /// `requestheader-*`: the aggregation proxy.
    pub request_header: Option<RequestHeaderConfig>,
    /// Union of both CA subject lists, for the TLS handshake.
    pub hint_subjects: Vec<DistinguishedName>,
}

fn list(
    data: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Vec<String>, AuthConfigError> {
    match data.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(vec![]),
        Some(raw) => {
            serde_json::from_str(raw).map_err(|source| AuthConfigError::List { key, source })
        }
    }
}

impl AuthConfig {
    /// Parses the ConfigMap's `data`.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, AuthConfigError> {
        let pem = |key: &'static str| -> Result<Option<TrustedCas>, AuthConfigError> {
            match data.get(key).filter(|s| !s.trim().is_empty()) {
                None => Ok(None),
                Some(pem) => TrustedCas::from_pem(key, pem).map(Some),
            }
        };
        let client_cas = pem("client-ca-file")?;
        let request_header = match pem("requestheader-client-ca-file")? {
            None => None,
            Some(cas) => Some(RequestHeaderConfig {
                cas,
                allowed_names: list(data, "requestheader-allowed-names")?,
                username_headers: list(data, "requestheader-username-headers")?,
                group_headers: list(data, "requestheader-group-headers")?,
                extra_headers_prefixes: list(data, "requestheader-extra-headers-prefix")?,
                uid_headers: list(data, "requestheader-uid-headers")?,
            }),
        };
        let mut hint_subjects: Vec<DistinguishedName> = vec![];
        let cas = [client_cas.as_ref(), request_header.as_ref().map(|r| &r.cas)];
        for subject in cas.into_iter().flatten().flat_map(TrustedCas::subjects) {
            if !hint_subjects.iter().any(|s| s.as_ref() == subject.as_ref()) {
                hint_subjects.push(subject.clone());
            }
        }
        Ok(Self {
            client_cas,
            request_header,
            hint_subjects,
        })
    }
}

/// The current [`AuthConfig`], swapped atomically when the ConfigMap changes.
#[derive(Debug, Default)]
pub struct AuthConfigCell {
    current: RwLock<Arc<AuthConfig>>,
    loaded: AtomicBool,
}

impl AuthConfigCell {
    /// An empty cell: nothing trusted, not loaded.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A cell holding `config` (tests, static setups).
    pub fn with(config: AuthConfig) -> Arc<Self> {
        let cell = Self::default();
        cell.set(config);
        Arc::new(cell)
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<AuthConfig> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether a valid ConfigMap has been loaded (readiness).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Replaces the configuration.
    pub fn set(&self, config: AuthConfig) {
        let config = Arc::new(config);
        match self.current.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        self.loaded.store(true, Ordering::Release);
    }

    /// Applies a ConfigMap; on error the previous configuration stays.
    pub fn apply(&self, configmap: &ConfigMap) -> Result<(), AuthConfigError> {
        let data = configmap.data.clone().unwrap_or_default();
        self.set(AuthConfig::from_data(&data)?);
        Ok(())
    }

    /// Watches the ConfigMap until `cancel`, applying every version.
    pub async fn watch(self: Arc<Self>, client: kube::Client, cancel: CancellationToken) {
        let api: Api<ConfigMap> = Api::namespaced(client, AUTH_CONFIGMAP_NAMESPACE);
        let config =
            watcher::Config::default().fields(&format!("metadata.name={AUTH_CONFIGMAP_NAME}"));
        // The operator's backoff (capped at 5 s): kube's default waits up to 30 s after an
        // API-server restart before it sees the ConfigMap again.
        let mut events = crate::operator::watch_backoff::watch(api, config).boxed();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                    match self.apply(&cm) {
                        Ok(()) => tracing::info!(
                            configmap = AUTH_CONFIGMAP_NAME,
                            "authentication configuration loaded"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "keeping the previous authentication configuration")
                        }
                    }
                }
                Some(Ok(watcher::Event::Delete(_))) => tracing::warn!(
                    configmap = AUTH_CONFIGMAP_NAME,
                    "authentication ConfigMap deleted; keeping the previous configuration"
                ),
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "watching the authentication ConfigMap"),
            }
        }
    }

    /// Starts [`Self::watch`] in the background.
    pub fn spawn_watch(
        self: &Arc<Self>,
        client: kube::Client,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().watch(client, cancel))
    }
}

/// Time until the leaf's notAfter (zero when unreadable or past).
fn remaining_validity(leaf: &CertificateDer<'_>) -> Duration {
    x509_parser::parse_x509_certificate(leaf)
        .ok()
        .and_then(|(_, cert)| cert.validity().time_to_expiration())
        .and_then(|left| Duration::try_from(left).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("ca-{n}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_full_configmap_parses_with_both_cas_hinted() {
        let (client, proxy) = (ca_pem(), ca_pem());
        let config = AuthConfig::from_data(&data(&[
            ("client-ca-file", &client),
            ("requestheader-client-ca-file", &proxy),
            ("requestheader-allowed-names", "[\"front-proxy-client\"]"),
            ("requestheader-username-headers", "[\"X-Remote-User\"]"),
            ("requestheader-group-headers", "[\"X-Remote-Group\"]"),
            (
                "requestheader-extra-headers-prefix",
                "[\"X-Remote-Extra-\"]",
            ),
        ]))
        .unwrap();
        let rh = config.request_header.unwrap();
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(rh.username_headers, ["X-Remote-User"]);
        assert!(rh.uid_headers.is_empty());
        assert!(config.client_cas.is_some());
        assert_eq!(config.hint_subjects.len(), 2);
    }

    #[test]
    fn malformed_values_name_the_key_and_keep_the_previous_config() {
        let cell = AuthConfigCell::new();
        assert!(!cell.loaded());
        let good = ConfigMap {
            data: Some(data(&[("client-ca-file", &ca_pem())])),
            ..ConfigMap::default()
        };
        cell.apply(&good).unwrap();
        assert!(cell.loaded());
        let bad_pem = ConfigMap {
            data: Some(data(&[(
                "client-ca-file",
                "-----BEGIN CERTIFICATE-----\nnope\n",
            )])),
            ..ConfigMap::default()
        };
        let err = cell.apply(&bad_pem).unwrap_err().to_string();
        assert!(err.contains("client-ca-file"), "{err}");
        let bad_json = AuthConfig::from_data(&data(&[
            ("requestheader-client-ca-file", &ca_pem()),
            ("requestheader-allowed-names", "front-proxy-client"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            bad_json.contains("requestheader-allowed-names"),
            "{bad_json}"
        );
        assert!(
            cell.current().client_cas.is_some(),
            "the previous config stays"
        );
    }
}
