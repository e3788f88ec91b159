//! TLS configurations of the join API: the server's, the verified client's, and the one
//! unverified client configuration used for exactly one request, the CA fetch, whose answer is
//! then checked against the pin in the token before anything else is sent.

use std::sync::Arc;

use k0x_etcd::transport::client_config_builder;
use k0x_etcd::{parse_certs, parse_key};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::Error;

/// The serving configuration: the controller's certificate (signed by the cluster CA), no client
/// certificates (joining nodes have none yet; they authenticate with the token).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, Error> {
    let chain = parse_certs(cert_pem).map_err(Error::tls("join API certificate"))?;
    let key = parse_key(key_pem).map_err(Error::tls("join API key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls("join API TLS versions")(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::tls("join API certificate and key")(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration trusting only `ca_pem`.
pub fn verified_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(ca_pem).map_err(Error::tls("cluster CA certificate"))? {
        roots
            .add(cert)
            .map_err(|e| Error::tls("unusable CA certificate")(e.to_string()))?;
    }
    Ok(client_config_builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that accepts any server certificate. Only for `GET /v1/ca`, whose
/// answer is compared with the token's pin: nothing secret is sent over it.
pub(crate) fn unverified_client_config() -> rustls::ClientConfig {
    client_config_builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
            provider: provider(),
        }))
        .with_no_client_auth()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate but still checks the handshake signatures, so the peer at least holds
/// the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
