//! TLS on the gRPC TCP listener: the server's identity and, with a client
//! CA, mutual TLS, and the one place a verified client certificate becomes
//! the names `access` matches principals by.
//!
//! Verification is rustls's (through tonic): a certificate reaches
//! [`certificate_of`] only after the handshake checked its chain against the
//! configured CA. This module never decides who may do what.

use std::sync::Arc;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::access;
use crate::config::TlsConfig;

/// The listener's TLS settings. Client certificates are optional so that a
/// client without one can still be the anonymous inference caller; one that
/// presents a certificate the CA did not sign fails the handshake.
pub fn server_config(tls: &TlsConfig) -> ServerTlsConfig {
    let config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.certificate_pem, &tls.key_pem));
    match &tls.client_ca_pem {
        Some(ca) => config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true),
        None => config,
    }
}

/// The identity in a verified client certificate (the leaf, first in the
/// chain). A certificate that does not parse identifies nobody: None.
pub fn certificate_of(der: &[u8]) -> Option<Arc<access::Certificate>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                    names.push((*n).to_owned())
                }
                _ => {}
            }
        }
    }
    Some(Arc::new(access::Certificate {
        subject: cert.subject().to_string(),
        names,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_certificate_is_named_by_its_common_name_and_alternative_names() {
        let mut params = rcgen::CertificateParams::new(vec!["edge.example".to_owned(), "10.0.0.7".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "edge-client");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dsmil tests");
        params
            .subject_alt_names
            .push(rcgen::SanType::Rfc822Name("ops@example.net".try_into().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = super::certificate_of(cert.der()).unwrap();
        assert_eq!(id.names, ["edge-client", "edge.example", "ops@example.net"]);
        assert!(id.subject.contains("CN=edge-client"), "{}", id.subject);
        assert!(super::certificate_of(b"not a certificate").is_none());
    }
}
