//! HTTPS: the certificate chain and key of `--tls-cert` / `--tls-key` (PEM), the rustls server
//! configuration (ring; TLS 1.2 and 1.3; ALPN `http/1.1`) and each connection's handshake.
//!
//! The certificate is read again on SIGHUP (`Certificates::reload`): handshakes from then on
//! use the new one, connections already open keep their session. A file that does not load
//! leaves the old certificate in place.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;

pub use crate::config::TlsFiles;

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate handshakes present; replaced whole on reload.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the files, or says what is wrong with them.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(read(files)?)),
        }))
    }

    /// Loads the files again; on an error the certificate in use stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        let fresh = Arc::new(read(files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The end-entity certificate in use (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).cert[0].clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1)
/// and checks that they belong together.
fn read(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert = files.cert.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert}: {}", pem_error(&e)))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {cert}: no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("--tls-key {}: {}", files.key.display(), pem_error(&e)))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "--tls-key {} is not the key of the certificate in --tls-cert {cert}",
            files.key.display()
        ),
        e => format!("--tls-key {}: {e}", files.key.display()),
    })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        e => format!("not valid PEM ({e:?})"),
    }
}

/// The server side of every HTTPS connection.
pub fn acceptor(certificates: Arc<Certificates>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Runs a connection's handshake, within `HANDSHAKE_TIMEOUT`.
pub async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the TLS handshake took too long",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair(dir: &Path, tag: &str) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        TlsFiles {
            cert: write(dir, &format!("{tag}.crt"), &cert.cert.pem()),
            key: write(
                dir,
                &format!("{tag}.key"),
                &cert.signing_key.serialize_pem(),
            ),
        }
    }

    #[test]
    fn loads_a_pair_and_reloads_keeping_the_old_one_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair(dir.path(), "a");
        let second = pair(dir.path(), "b");
        let certificates = Certificates::load(&first).unwrap();
        let before = certificates.leaf();
        certificates.reload(&second).unwrap();
        let after = certificates.leaf();
        assert_ne!(before, after);
        // A key that is not the certificate's: refused, and the new one stays.
        let mixed = TlsFiles {
            cert: first.cert.clone(),
            key: second.key.clone(),
        };
        let error = certificates.reload(&mixed).unwrap_err();
        assert!(
            error.contains("is not the key of the certificate"),
            "{error}"
        );
        assert_eq!(certificates.leaf(), after);
    }

    #[test]
    fn explains_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = pair(dir.path(), "a");
        let missing = TlsFiles {
            cert: dir.path().join("none.crt"),
            key: good.key.clone(),
        };
        assert!(Certificates::load(&missing)
            .unwrap_err()
            .contains("--tls-cert"));
        let not_pem = TlsFiles {
            cert: write(dir.path(), "x.crt", "hello"),
            key: good.key.clone(),
        };
        assert!(Certificates::load(&not_pem)
            .unwrap_err()
            .contains("no certificate"));
        let key_as_cert = TlsFiles {
            cert: good.cert.clone(),
            key: good.cert.clone(),
        };
        assert!(Certificates::load(&key_as_cert)
            .unwrap_err()
            .starts_with("--tls-key"));
    }
}
