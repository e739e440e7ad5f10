//! The client's TLS certificate chain as authentication reads it, worked out once per
//! connection.
//!
//! The aggregator keeps its connections open and presents the same front-proxy certificate on
//! every request, so what `authn` needs from the chain — its fingerprint (the key of the CA
//! verdict cache in `auth_config`) and the leaf's subject — is computed at the handshake, not
//! per request. Which CA must have signed the chain is still decided per request, against the
//! CAs in force then.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// The leaf certificate's Subject: the CN is the user (or the front proxy's name), the O
/// values are groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The first common name.
    pub common_name: String,
    /// Every organization, in order.
    pub organizations: Vec<String>,
}

/// The chain the client presented (leaf first), unverified beyond key possession; empty
/// without a client certificate. Present in every request's extensions; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(Arc<PeerChain>);

#[derive(Debug, Default)]
struct PeerChain {
    certs: Vec<CertificateDer<'static>>,
    fingerprint: [u8; 32],
    subject: Option<Subject>,
}

impl PeerCertificates {
    /// Reads `certs` (leaf first) once: fingerprint and leaf subject.
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Self {
        let fingerprint = fingerprint(&certs);
        let subject = certs.first().and_then(subject);
        Self(Arc::new(PeerChain {
            certs,
            fingerprint,
            subject,
        }))
    }

    /// The chain, leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.0.certs
    }

    /// The leaf certificate, if any.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.certs.first()
    }

    /// Whether the client presented no certificate.
    pub fn is_empty(&self) -> bool {
        self.0.certs.is_empty()
    }

    /// SHA-256 over the whole chain (lengths included, so no two chains collide by framing).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.0.fingerprint
    }

    /// The leaf's subject; `None` without a leaf or when it has no readable common name.
    pub fn subject(&self) -> Option<&Subject> {
        self.0.subject.as_ref()
    }
}

fn fingerprint(chain: &[CertificateDer<'static>]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in chain {
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert);
    }
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

fn subject(leaf: &CertificateDer<'_>) -> Option<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    let organizations = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(Subject {
        common_name,
        organizations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with subject CN `cn` and O `org` (rcgen keeps one value per
    /// attribute type).
    fn cert(cn: &str, org: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subject_and_fingerprint_are_read_once_per_chain() {
        let leaf = cert("front-proxy-client", "system:masters");
        let peer = PeerCertificates::new(vec![leaf.clone()]);
        let subject = peer.subject().unwrap();
        assert_eq!(subject.common_name, "front-proxy-client");
        assert_eq!(subject.organizations, ["system:masters"]);
        assert_eq!(peer.leaf(), Some(&leaf));
        let same = PeerCertificates::new(vec![leaf.clone()]);
        assert_eq!(peer.fingerprint(), same.fingerprint());
        let longer = PeerCertificates::new(vec![leaf.clone(), leaf]);
        assert_ne!(peer.fingerprint(), longer.fingerprint());
    }

    #[test]
    fn no_certificate_means_no_subject() {
        let peer = PeerCertificates::default();
        assert!(peer.is_empty());
        assert!(peer.subject().is_none());
        let garbage = PeerCertificates::new(vec![CertificateDer::from(vec![1, 2, 3])]);
        assert!(!garbage.is_empty());
        assert!(garbage.subject().is_none());
    }
}
