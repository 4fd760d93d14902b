//! TURN over TLS (RFC 8656 §3.1): the rustls configurations of the relay's TLS listener and of
//! the client's connection to a relay, and the PEM files they are read from.
//!
//! TLS is only a layer between the TCP stream and TURN's stream framing
//! ([`crate::frames`]): both ends wrap a `TcpStream` with `tokio-rustls` and frame as over TCP.
//! The client verifies the relay's certificate against the operating system's roots plus any
//! CA the user trusts for a self-hosted relay; there is no way to turn verification off.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake may take, on either end, before the connection is dropped.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(5);

/// Reads every certificate of a PEM file (a chain, leaf first; or CAs to trust).
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no CERTIFICATE in the PEM file", path.display()),
        ));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, &e))
}

fn pem_error(path: &Path, e: &rustls_pki_types::pem::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The relay's TLS listener configuration: `chain` (leaf first) and its `key`, TLS 1.2 and
/// 1.3 (coturn's and browsers' clients still offer 1.2), no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(Arc::new(config))
}

/// Which certificate authorities a TURN client trusts for relays reached over TLS.
#[derive(Clone, Debug, Default)]
pub struct TurnTrust {
    /// Also trust the operating system's roots (what a public relay's certificate chains to).
    pub system_roots: bool,
    /// Extra CAs, e.g. a self-hosted relay's private CA (`connect --turn-ca`).
    pub extra_cas: Vec<CertificateDer<'static>>,
}

impl TurnTrust {
    /// The system's roots and nothing else.
    pub fn system() -> Self {
        TurnTrust {
            system_roots: true,
            extra_cas: Vec::new(),
        }
    }

    /// The client configuration verifying relays against these CAs. Fails when no CA at all is
    /// trusted, or when an extra CA is not a usable trust anchor.
    pub fn client_config(&self) -> io::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        if self.system_roots {
            // Unreadable system certificates are skipped, as every rustls user does; an
            // explicit CA still works without them.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        for ca in &self.extra_cas {
            roots
                .add(ca.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        if roots.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no CA to verify TURN servers with: the system has no root certificates and none was given",
            ));
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Completes a TLS handshake as the relay on an accepted stream, within [`TLS_HANDSHAKE`].
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Completes a TLS handshake with the relay at `server`, verifying its certificate for `name`
/// (a DNS name, or an IP literal matched against the certificate's IP SANs; `None`: `server`'s
/// IP), within [`TLS_HANDSHAKE`].
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    stream: TcpStream,
    server: SocketAddr,
    name: Option<&str>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = match name {
        Some(name) => ServerName::try_from(name.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a DNS name or IP address to verify"),
            )
        })?,
        None => ServerName::IpAddress(server.ip().into()),
    };
    let connector = TlsConnector::from(config);
    tokio::time::timeout(TLS_HANDSHAKE, connector.connect(name, stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
        .map_err(|e| {
            // rustls's reason (e.g. "invalid peer certificate: UnknownIssuer") says it all.
            io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
        })
}
