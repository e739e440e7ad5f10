//! One reqwest client — one HTTP connection pool — per (scheme, host, port, TLS settings), with
//! per-endpoint backoff and a hard timeout on every call (spec/scalers.md §1.8).
//!
//! TLS is rustls with the ring provider, built here rather than by reqwest so that `ca`, client
//! certificates and `unsafeSsl` work the same for every scaler. Minimum version TLS 1.2.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode, Url};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Pool, Shared, effective_timeout};

/// Requests in flight per endpoint, and so its open connections (performance.md T9: O(1)
/// connections per host). Requests beyond it wait for a turn (within their timeout) instead of
/// opening a connection that the pool would close again: with 10,000 objects polled every
/// second on a busy machine, unbounded bursts opened and dropped sockets by the thousand.
pub const MAX_CONNECTIONS_PER_HOST: usize = 32;

/// Largest response body read; a misbehaving endpoint cannot make us buffer more.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// TLS material and policy for one client (PEM text, not paths). Part of the pool key.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// `unsafeSsl`: skip server certificate verification.
    pub unsafe_ssl: bool,
    /// Extra CA certificates (PEM), added to the system roots.
    pub ca: Option<String>,
    /// Client certificate chain (PEM); used only together with `key`.
    pub cert: Option<String>,
    /// Client private key (PEM, unencrypted). Secret: never printed.
    pub key: Option<String>,
    /// Password of an encrypted PKCS#8 `key` (`keyPassword`). Secret: never printed.
    pub key_password: Option<String>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("unsafe_ssl", &self.unsafe_ssl)
            .field("ca", &self.ca.is_some())
            .field("cert", &self.cert.is_some())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Pool key: the URL origin plus TLS settings. Credentials travel per request, not per client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpKey {
    /// `scheme://host:port`, without userinfo.
    pub origin: String,
    /// The TLS settings the client was built with.
    pub tls: TlsSettings,
}

/// A pooled HTTP client; its endpoint's backoff is kept by the pool.
pub struct HttpClient {
    client: reqwest::Client,
    key: HttpKey,
    /// One permit per request in flight, [`MAX_CONNECTIONS_PER_HOST`] in all.
    in_flight: tokio::sync::Semaphore,
}

/// Why an HTTP call failed. Messages never carry URLs with credentials.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The endpoint failed recently; no attempt was made.
    #[error("endpoint is backing off after failures, next attempt in {0:?}")]
    BackingOff(Duration),
    /// The call did not finish within the timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure.
    #[error("request failed: {0}")]
    Transport(String),
    /// The body exceeded [`MAX_BODY_BYTES`].
    #[error("response body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

static POOL: LazyLock<Arc<Pool<HttpKey, HttpClient>>> = LazyLock::new(|| Arc::new(Pool::new()));

/// The process-wide HTTP client pool (for stats).
pub fn pool() -> &'static Arc<Pool<HttpKey, HttpClient>> {
    &POOL
}

/// Take a share of the client for `url`'s origin with `tls`; builds it on first use.
pub fn acquire(url: &Url, tls: &TlsSettings) -> Result<Shared<HttpKey, HttpClient>, String> {
    let key = HttpKey::new(url, tls);
    POOL.acquire(&key, || HttpClient::new(&key))
}

impl HttpKey {
    /// The key for `url`'s origin (userinfo, path and query do not matter) and `tls`.
    pub fn new(url: &Url, tls: &TlsSettings) -> Self {
        Self {
            origin: url.origin().ascii_serialization(),
            tls: tls.clone(),
        }
    }
}

impl HttpClient {
    fn new(key: &HttpKey) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(rustls_config(&key.tls)?)
            // Idle keep-alive connections are what make polls cheap; drop them when unused.
            .pool_idle_timeout(Duration::from_secs(90))
            // `send` never has more in flight, so every connection opened stays reusable.
            .pool_max_idle_per_host(MAX_CONNECTIONS_PER_HOST)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self {
            client,
            key: key.clone(),
            in_flight: tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_HOST),
        })
    }

    /// The reqwest client, to build requests with.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send `request` and read the body, all within `timeout` (zero means 300 ms).
    ///
    /// Fails fast while the endpoint backs off; transport failures extend the backoff, and any
    /// HTTP response (whatever its status) resets it.
    pub async fn send(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<(StatusCode, String), HttpError> {
        POOL.check_backoff(&self.key)
            .map_err(HttpError::BackingOff)?;
        let timeout = effective_timeout(timeout);
        let turn = async {
            // Never closed: the semaphore lives as long as the client.
            let _permit = self.in_flight.acquire().await;
            read(request).await
        };
        let result = match tokio::time::timeout(timeout, turn).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(timeout)),
        };
        POOL.record(
            &self.key,
            matches!(result, Ok(_) | Err(HttpError::TooLarge)),
        );
        result
    }
}

async fn read(request: RequestBuilder) -> Result<(StatusCode, String), HttpError> {
    // `without_url` keeps userinfo and query strings (which may carry secrets) out of messages.
    let transport = |e: reqwest::Error| HttpError::Transport(e.without_url().to_string());
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system roots, loaded once: reading the trust store is slow and does not change.
static NATIVE_ROOTS: LazyLock<Vec<CertificateDer<'static>>> =
    LazyLock::new(|| rustls_native_certs::load_native_certs().certs);

/// A rustls client config for `tls` (ring provider, TLS 1.2+).
pub fn rustls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if tls.unsafe_ssl {
        let algorithms = provider.signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(algorithms)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(NATIVE_ROOTS.iter().cloned());
        if let Some(ca) = &tls.ca {
            let (added, _) = roots.add_parsable_certificates(parse_certs(ca, "ca")?);
            if added == 0 {
                return Err("tls: \"ca\" holds no usable certificate".to_owned());
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let key = private_key(key, tls.key_password.as_deref())?;
            builder
                .with_client_auth_cert(parse_certs(cert, "cert")?, key)
                .map_err(|e| format!("tls: client certificate rejected: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The client key: PEM (PKCS#1, SEC1 or PKCS#8), or an encrypted PKCS#8 PEM with `password`.
/// Messages never include key material.
pub fn private_key(pem: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let Some(password) = password else {
        return PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| "tls: \"key\" is not an unencrypted PEM private key".to_owned());
    };
    let (label, document) = pkcs8::SecretDocument::from_pem(pem)
        .map_err(|_| "tls: \"key\" is not valid PEM".to_owned())?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(
            "tls: \"keyPassword\" is set but \"key\" is not an encrypted PKCS#8 key".into(),
        );
    }
    let decrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .and_then(|info| info.decrypt(password))
        .map_err(|_| "tls: \"key\" cannot be decrypted with \"keyPassword\"".to_owned())?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        decrypted.as_bytes().to_vec(),
    )))
}

/// Every certificate in a PEM bundle; an empty or broken bundle is an error naming `what`.
pub fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("tls: {what:?} is not valid PEM"))?;
    if certs.is_empty() {
        return Err(format!("tls: {what:?} holds no PEM certificate"));
    }
    Ok(certs)
}

/// `unsafeSsl=true`: accept any server certificate, but still check handshake signatures.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn clients_are_shared_per_origin_and_tls() {
        let key = |url: &str, tls: &TlsSettings| HttpKey::new(&Url::parse(url).expect("url"), tls);
        let plain = TlsSettings::default();
        let insecure = TlsSettings {
            unsafe_ssl: true,
            ..TlsSettings::default()
        };
        let a = key("http://127.0.0.1:1/x", &plain);
        assert_eq!(a, key("http://u:p@127.0.0.1:1/y?z", &plain));
        assert_ne!(a, key("http://127.0.0.1:2/", &plain));
        assert_ne!(a, key("http://127.0.0.1:1/x", &insecure));
        // A pool of its own: the global one is shared with concurrent tests.
        let pool: Arc<Pool<HttpKey, HttpClient>> = Arc::new(Pool::new());
        let shares: Vec<_> = [
            "http://127.0.0.1:1/x",
            "http://u:p@127.0.0.1:1/y",
            "http://h:2",
        ]
        .iter()
        .map(|u| {
            let k = key(u, &plain);
            pool.acquire(&k, || HttpClient::new(&k)).expect("client")
        })
        .collect();
        let stats = pool.stats();
        assert_eq!((stats.clients, stats.shares), (2, 3));
        drop(shares);
        assert_eq!(pool.stats().clients, 0);
    }

    const CERT: &str = include_str!("../../tests/fixtures/tls/client-cert.pem");
    const KEY: &str = include_str!("../../tests/fixtures/tls/client-key.pem");
    const ENCRYPTED_KEY: &str = include_str!("../../tests/fixtures/tls/client-key-encrypted.pem");

    fn client_tls(key: &str, password: Option<&str>) -> TlsSettings {
        TlsSettings {
            ca: Some(CERT.into()),
            cert: Some(CERT.into()),
            key: Some(key.into()),
            key_password: password.map(Into::into),
            ..TlsSettings::default()
        }
    }

    #[rstest]
    #[case::plain_key(KEY, None, None)]
    #[case::encrypted_key(ENCRYPTED_KEY, Some("fixture-pw"), None)]
    #[case::wrong_password(ENCRYPTED_KEY, Some("nope"), Some("cannot be decrypted"))]
    #[case::encrypted_without_password(ENCRYPTED_KEY, None, Some("not an unencrypted PEM"))]
    #[case::password_for_plain_key(KEY, Some("fixture-pw"), Some("not an encrypted PKCS#8"))]
    fn client_keys_plain_or_encrypted(
        #[case] key: &str,
        #[case] password: Option<&str>,
        #[case] error: Option<&str>,
    ) {
        match (rustls_config(&client_tls(key, password)), error) {
            (Ok(config), None) => assert!(config.client_auth_cert_resolver.has_certs()),
            (Err(message), Some(expected)) => {
                assert!(message.contains(expected), "{message}");
                assert!(!message.contains("fixture-pw") && !message.contains("PRIVATE"));
            }
            (Ok(_), Some(expected)) => panic!("expected an error containing {expected:?}"),
            (Err(message), None) => panic!("unexpected error: {message}"),
        }
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let tls = TlsSettings {
            ca: Some("not pem".into()),
            ..TlsSettings::default()
        };
        assert_eq!(
            rustls_config(&tls).expect_err("bad ca"),
            "tls: \"ca\" holds no PEM certificate"
        );
        let tls = TlsSettings {
            cert: Some("x".into()),
            key: Some("secret-key-text".into()),
            ..TlsSettings::default()
        };
        let message = rustls_config(&tls).expect_err("bad key");
        assert!(!message.contains("secret-key-text"), "{message}");
        assert!(!format!("{tls:?}").contains("secret-key-text"));
    }
}
