//! The sandbox's certificates, generated at start with rcgen (ECDSA P-256, ring).
//!
//! Like a kubeadm cluster, three authorities exist: the cluster CA (signs the API server's
//! serving certificate; goes into kubeconfigs as `certificate-authority-data`), the client CA
//! (signs user client certificates; published as `client-ca-file`) and the front-proxy CA
//! (signs the `front-proxy-client` certificate the aggregation proxy presents to extension API
//! servers; published as `requestheader-client-ca-file`).

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate or key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the material.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// A certificate with its private key, in PEM and DER.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// Private key (PKCS#8), DER.
    pub key_der: Vec<u8>,
}

impl Issued {
    /// The private key as rustls wants it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server authentication.
    Server,
    /// TLS client authentication.
    Client,
}

/// A certificate authority that can issue leaf certificates.
#[derive(Debug)]
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

impl Authority {
    /// A new self-signed CA.
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            params,
            key,
        })
    }

    /// Issues a leaf certificate: `common_name`/`organizations` become the Subject (the user
    /// and groups of a client certificate), `dns`/`ips` the SANs of a serving certificate.
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        dns: &[&str],
        ips: &[IpAddr],
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(dns.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        for org in organizations {
            dn.push(DnType::OrganizationName, *org);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

/// All certificates of one sandbox.
#[derive(Debug)]
pub struct Pki {
    /// Signs the serving certificate.
    pub cluster_ca: Authority,
    /// Signs user client certificates.
    pub client_ca: Authority,
    /// Signs the front-proxy client certificate.
    pub front_proxy_ca: Authority,
    /// The API server's serving certificate (localhost, 127.0.0.1, ::1, kubernetes.default.svc).
    pub serving: Issued,
    /// The aggregation proxy's client certificate (CN `front-proxy-client`).
    pub front_proxy_client: Issued,
}

/// The provider every TLS config of the sandbox uses (ring, never the process default).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// Generates a fresh set.
    pub fn generate(extra_ips: &[IpAddr]) -> Result<Self, PkiError> {
        let cluster_ca = Authority::new("kubernetes")?;
        let client_ca = Authority::new("kubernetes-client-ca")?;
        let front_proxy_ca = Authority::new("front-proxy-ca")?;
        let mut ips: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        ips.extend(extra_ips.iter().copied().filter(|ip| !ip.is_unspecified()));
        let dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ];
        let serving = cluster_ca.issue("kube-apiserver", &[], &dns, &ips, Usage::Server)?;
        let front_proxy_client =
            front_proxy_ca.issue("front-proxy-client", &[], &[], &[], Usage::Client)?;
        Ok(Self {
            cluster_ca,
            client_ca,
            front_proxy_ca,
            serving,
            front_proxy_client,
        })
    }

    /// The server TLS config: serving certificate, optional client certificates from the
    /// client CA, HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.client_ca.cert_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.serving.cert_der.clone()],
                self.serving.private_key(),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}
