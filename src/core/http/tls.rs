//! HTTPS (`[http.tls]`): the certificate and key are PEM files, read at start (a bad pair stops the
//! start with the reason) and again whenever either file changes, so a renewed certificate needs no
//! restart; a pair that no longer loads is logged and the previous one kept. Handshakes run in
//! tasks of their own (ten seconds at most, 256 at once), so a slow or silent client delays
//! nobody else's connection. `plugpos tls self-signed` makes a pair for the shop LAN (`self_signed`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most.
const MAX_HANDSHAKES: usize = 256;
/// How often the files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The server's certificate, as loaded from its files, and what the files looked like then.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<ServerConfig>, Stamp)>,
}

/// A file's modification time and length, for both files.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    })
}

/// The rustls configuration of the certificate chain in `cert` and the private key in `key`.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Certificates {
    /// Loads the pair (the server does not start without a valid one).
    pub fn open(cert: PathBuf, key: PathBuf) -> anyhow::Result<Arc<Certificates>> {
        let before = stamp(&cert, &key);
        let config = load(&cert, &key)?;
        Ok(Arc::new(Certificates {
            current: RwLock::new((config, before)),
            cert,
            key,
        }))
    }

    fn config(&self) -> Arc<ServerConfig> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.0.clone()
    }

    /// Loads the files again if they changed; `Ok(true)` when a new pair is in use.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamp(&self.cert, &self.key);
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.1 == now {
                return Ok(false);
            }
        }
        let loaded = load(&self.cert, &self.key);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // A broken pair is reported once, not at every look: its stamp is kept.
        current.1 = now;
        current.0 = loaded?;
        Ok(true)
    }

    /// Looks at the files every few seconds for as long as the server runs.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(
                    cert = %self.cert.display(),
                    fingerprint = %self.fingerprint().unwrap_or_default(),
                    "TLS certificate reloaded"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "the changed TLS certificate or key cannot be used; still serving the previous one"
                ),
            }
        }
    }

    /// The SHA-256 fingerprint of the leaf certificate in use.
    pub fn fingerprint(&self) -> Option<String> {
        let der = CertificateDer::pem_file_iter(&self.cert)
            .ok()?
            .next()?
            .ok()?;
        Some(fingerprint(&der))
    }
}

/// A client configuration that trusts exactly the certificate `pinned` (DER) and nothing else:
/// how this machine's own commands (the upgrade's checks) talk to the server over TLS, as a
/// desktop client that pins the fingerprint does.
pub fn pinned_client(pinned: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(Pinned {
        certificate: pinned,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    // The provider's default versions always exist; a failure here is a build without them.
    Arc::new(config.unwrap_or_else(|_| {
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }))
}

/// The leaf certificate of the PEM chain in `cert`.
pub fn leaf(cert: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .next()
        .with_context(|| format!("{} holds no certificate", cert.display()))?
        .with_context(|| format!("{} is not a PEM certificate", cert.display()))
}

/// When the leaf certificate of the PEM chain in `cert` stops being valid.
pub fn not_after(cert: &Path) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let der = leaf(cert)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a readable X.509 certificate: {e}",
            cert.display()
        )
    })?;
    chrono::DateTime::from_timestamp(parsed.validity().not_after.timestamp(), 0)
        .with_context(|| format!("{} has an impossible expiry date", cert.display()))
}

/// Accepts the one pinned certificate (its signatures checked as usual), whatever the name.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

/// A certificate's SHA-256 fingerprint as clients pin it: upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The TLS connections of a TCP listener, handshaken in tasks of their own; what `axum::serve`
/// accepts from (wrap it with `ListenerExt::tap_io` to get the client's address as `ConnectInfo`).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl TlsListener {
    /// Accepts on `tcp` with the certificate `certificates` holds at each handshake.
    pub fn new(tcp: TcpListener, certificates: Arc<Certificates>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        // Handshakes in flight at most: past it, new connections wait in the kernel's backlog
        // rather than each taking a task and a file descriptor.
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = TlsAcceptor::from(certificates.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            // The server takes connections as fast as it serves them; one it
                            // cannot take within the handshake's time is dropped.
                            let _ =
                                tokio::time::timeout(HANDSHAKE_TIMEOUT, tx.send((tls, peer))).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A new self-signed certificate for `names` (host names and IP addresses), valid `days` from
/// `now`: the certificate and its private key, PEM.
pub fn self_signed(
    names: &[String],
    now: chrono::DateTime<chrono::Utc>,
    days: i64,
) -> anyhow::Result<(String, String)> {
    use chrono::Datelike;
    if let Some(bad) = names.iter().find(|n| !is_host_or_ip(n)) {
        anyhow::bail!("`{bad}` is neither a host name nor an IP address");
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("a name is neither a host name nor an IP address")?;
    let day = |t: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(days));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "plugpos".to_owned()),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "3PlugPOS server");
    let key = rcgen::KeyPair::generate().context("cannot make a key pair")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A host name (dot-separated labels of letters, digits and inner hyphens) or an IP address.
fn is_host_or_ip(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_loads_and_its_fingerprint_is_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .to_utc();
        let names = vec!["till.local".to_owned(), "192.168.1.20".to_owned()];
        let (cert, key) = self_signed(&names, now, 825).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let certificates = Certificates::open(cert_path.clone(), key_path.clone()).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let shown = certificates.fingerprint().unwrap();
        assert_eq!(shown, fingerprint(&der));
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert!(
            !certificates.reload_if_changed().unwrap(),
            "nothing changed"
        );

        // Another pair's key does not fit: the start refuses it, a reload keeps the old pair.
        let before = certificates.config();
        let (_, other_key) = self_signed(&names, now, 825).unwrap();
        std::fs::write(&key_path, other_key).unwrap();
        let refused = load(&cert_path, &key_path).unwrap_err();
        assert!(
            format!("{refused:#}").contains("does not fit"),
            "{refused:#}"
        );
        assert!(certificates.reload_if_changed().is_err());
        assert!(
            Arc::ptr_eq(&before, &certificates.config()),
            "the old pair stays"
        );
        assert!(!certificates.reload_if_changed().unwrap(), "reported once");
        for bad in ["not a name!", "", "a..b", "-x.local", "é.local"] {
            assert!(self_signed(&[bad.to_owned()], now, 1).is_err(), "{bad}");
        }
        assert!(is_host_or_ip("till-1.shop.local") && is_host_or_ip("::1"));
    }
}
