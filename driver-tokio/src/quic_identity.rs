//! Who is at the other end of a QUIC session over ICE: an Ed25519 key, its fingerprint, and
//! rustls configurations that trust exactly one fingerprint, never a certificate authority.
//!
//! - An [`Identity`] is an Ed25519 key pair (PKCS#8 PEM on disk) and a self-signed
//!   certificate made from it with rcgen. The certificate is a carrier only: nothing in it but
//!   the public key is checked.
//! - Its [`Fingerprint`] is the SHA-256 of the key's DER SubjectPublicKeyInfo, written
//!   `sha256:` and 64 lowercase hex digits. It names the key, so it stays the same across
//!   certificates made from it.
//! - Each side puts its fingerprint in its offer ([`key_line`], `a=x-holepunch-key:sha256:…`;
//!   the line's syntax is `holepunch_core::ice::key`, re-exported here),
//!   next to its ICE credentials and candidates. [`Identity::client_config`] and
//!   [`Identity::server_config`] build mutually authenticated TLS 1.3 configurations that
//!   accept the peer's certificate only when its key has the fingerprint from the peer's
//!   offer. A signal server that swaps keys, credentials or candidates can then make the
//!   handshake fail, but never get a session with either side.

use std::fmt;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

pub use holepunch_core::ice::key::{
    Fingerprint, FingerprintError, KEY_LINE_PREFIX, key_line, parse_key_line,
};

/// The ALPN protocol both sides offer.
pub const ALPN: &[u8] = b"holepunch/1";

/// The server name the client asks for (the certificate's name is not checked).
pub const SERVER_NAME: &str = "holepunch";

/// The fingerprint of a DER SubjectPublicKeyInfo: its SHA-256.
pub fn fingerprint_of_spki(spki_der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(spki_der).into())
}

/// The fingerprint of the key in a DER X.509 certificate.
pub fn fingerprint_of_certificate(cert: &CertificateDer<'_>) -> Result<Fingerprint, IdentityError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    Ok(fingerprint_of_spki(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// Why an identity could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The PEM text is not a PKCS#8 private key.
    #[error("not a PKCS#8 PEM private key: {0}")]
    Pem(String),
    /// The key is not Ed25519.
    #[error("the key is not Ed25519")]
    NotEd25519,
    /// Making or reading a certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls or quinn refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// An Ed25519 key pair and a self-signed certificate carrying its public key.
pub struct Identity {
    key: rcgen::KeyPair,
    cert: CertificateDer<'static>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random key (from the OS's generator, through ring).
    pub fn generate() -> Result<Identity, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        Identity::from_key(key)
    }

    /// The key in `pem` (PKCS#8, `-----BEGIN PRIVATE KEY-----`), which must be Ed25519.
    pub fn from_pem(pem: &str) -> Result<Identity, IdentityError> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| IdentityError::Pem(e.to_string()))?;
        if key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(IdentityError::NotEd25519);
        }
        Identity::from_key(key)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Identity, IdentityError> {
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let fingerprint = fingerprint_of_spki(&key.public_key_der());
        Ok(Identity {
            key,
            cert: cert.der().clone(),
            fingerprint,
        })
    }

    /// The private key as PKCS#8 PEM (what [`from_pem`](Self::from_pem) reads).
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// A quinn client configuration: TLS 1.3 with our certificate (client authentication),
    /// accepting only a server whose key has fingerprint `peer`.
    pub fn client_config(&self, peer: Fingerprint) -> Result<quinn::ClientConfig, IdentityError> {
        let provider = provider();
        let verifier = Arc::new(Pinned {
            peer,
            provider: Arc::clone(&provider),
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.key_der())
            .map_err(tls_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicClientConfig::try_from(tls).map_err(tls_error)?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport_config(None));
        Ok(config)
    }

    /// A quinn server configuration: TLS 1.3 with our certificate, requiring a client
    /// certificate whose key has fingerprint `peer`.
    pub fn server_config(&self, peer: Fingerprint) -> Result<quinn::ServerConfig, IdentityError> {
        let provider = provider();
        let verifier = Arc::new(Pinned {
            peer,
            provider: Arc::clone(&provider),
        });
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key_der())
            .map_err(tls_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(tls).map_err(tls_error)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport_config(None));
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl fmt::Display) -> IdentityError {
    IdentityError::Tls(e.to_string())
}

/// Transport settings for a session between two hosts: keep-alives well inside NAT binding
/// timeouts, an idle timeout that outlasts a path switch, windows for fast links, and (when
/// known, e.g. from ICE's checks) the path's round-trip time as the initial estimate, so a
/// lost handshake packet is resent after milliseconds rather than quinn's default second.
pub fn transport_config(initial_rtt: Option<std::time::Duration>) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    if let Some(rtt) = initial_rtt {
        t.initial_rtt(rtt.max(std::time::Duration::from_millis(1)));
    }
    t.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(std::time::Duration::from_secs(30)) {
        t.max_idle_timeout(Some(idle));
    }
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    // quinn-proto gives up on a stream whose reassembly buffer holds over 1,024 separate runs
    // ("too many gaps in stream buffer"). At the lab's 36 % end-to-end loss a full 8 MiB window
    // (~7,000 packets) averages ~1,600 runs, and a 50 MiB transfer failed that way in CI; 3 MiB
    // averages ~600, and still carries 30 MB/s per stream at 100 ms RTT.
    t.stream_receive_window(quinn::VarInt::from_u32(3 * 1024 * 1024));
    t.receive_window(quinn::VarInt::from_u32(16 * 1024 * 1024));
    t.send_window(16 * 1024 * 1024);
    Arc::new(t)
}

/// The error a verifier returns when the key is not the one in the offer.
struct WrongKey {
    expected: Fingerprint,
    seen: Fingerprint,
}

impl fmt::Display for WrongKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the peer's key is {}, not {} from its offer",
            self.seen, self.expected
        )
    }
}

// rustls shows the error with `Debug`: make that the sentence.
impl fmt::Debug for WrongKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for WrongKey {}

/// Accepts a certificate (client or server) only when its key has one fingerprint.
#[derive(Debug)]
struct Pinned {
    peer: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let seen = fingerprint_of_certificate(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if seen == self.peer {
            Ok(())
        } else {
            let other = rustls::OtherError(Arc::new(WrongKey {
                expected: self.peer,
                seen,
            }));
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                other,
            )))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl Pinned {
    /// QUIC is TLS 1.3 only: a TLS 1.2 signature is never checked.
    fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    /// The signature schemes the crypto provider verifies.
    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Pinned::tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Pinned::tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_fingerprint() {
        let id = Identity::generate().expect("generate");
        let again = Identity::from_pem(&id.to_pem()).expect("load");
        assert_eq!(id.fingerprint(), again.fingerprint());
        let from_cert = fingerprint_of_certificate(&again.cert).expect("parse");
        assert_eq!(
            from_cert,
            id.fingerprint(),
            "SPKI fingerprint, not the cert's"
        );
        assert_ne!(
            Identity::generate().expect("generate").fingerprint(),
            id.fingerprint()
        );
    }

    #[test]
    fn non_ed25519_keys_are_refused() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("gen");
        assert!(matches!(
            Identity::from_pem(&p256.serialize_pem()),
            Err(IdentityError::NotEd25519)
        ));
        assert!(matches!(
            Identity::from_pem("not pem"),
            Err(IdentityError::Pem(_))
        ));
    }
}
