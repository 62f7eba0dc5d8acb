//! TLS for the webhook listener: loads and checks the serving certificate and key before the
//! listener binds, builds the rustls configuration (ring, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, optional client-certificate verification), and rotates the certificate without a
//! restart.
//!
//! Rotation: the pair and the client CA bundle are followed by [`super::follow`] (by content
//! hash, through symlinks). A changed pair is swapped in only once both parse and the key matches
//! the certificate, so a half-written or mismatched pair is never served. New connections get the
//! new certificate; open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::follow::{Followed, Reading, Report, content_hash, follow};
use super::metrics::Metrics;

/// How often the certificate files are checked for changes.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// ALPN protocols offered, in preference order.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {what} file {path}: {cause}")]
    Read {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{what} file {path} is not PEM: {detail}")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{what} file {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("private key file {key} does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("private key file {path} cannot be used: {cause}")]
    BadKey { path: PathBuf, cause: rustls::Error },
    #[error("certificate file {path} cannot be used: {cause}")]
    BadCert { path: PathBuf, cause: rustls::Error },
    #[error("client CA file {path} cannot be used: {detail}")]
    ClientCa { path: PathBuf, detail: String },
    #[error("invalid TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Where the serving certificate and key live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS settings of the webhook listener.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub files: TlsFiles,
    /// Require client certificates signed by a CA in this PEM bundle.
    pub client_ca: Option<PathBuf>,
    /// How often to look for a rotated certificate.
    pub reload_interval: Duration,
}

/// The only crypto provider this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        what,
        path: path.to_owned(),
        cause,
    })
}

fn not_pem(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::NotPem {
        what,
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Parses the certificates of a PEM file (a chain: leaf first).
fn parse_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(what, path, e))?;
    if certs.is_empty() {
        return Err(if looks_like_pem(pem) {
            TlsError::Empty {
                what,
                path: path.to_owned(),
                expected: "certificate",
            }
        } else {
            not_pem(what, path, "no PEM section found")
        });
    }
    Ok(certs)
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Parses a certificate chain and its private key and checks that they belong together.
pub fn parse_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs("certificate", cert_path, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound if looks_like_pem(key_pem) => TlsError::Empty {
            what: "private key",
            path: key_path.to_owned(),
            expected: "private key",
        },
        rustls_pki_types::pem::Error::NoItemsFound => {
            not_pem("private key", key_path, "no PEM section found")
        }
        e => not_pem("private key", key_path, e),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|cause| TlsError::BadKey {
            path: key_path.to_owned(),
            cause,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(cause) => Err(TlsError::BadCert {
            path: cert_path.to_owned(),
            cause,
        }),
    }
}

/// The files' content hash and, when they parse and match, the key pair.
fn load_files(files: &TlsFiles) -> (Option<[u8; 32]>, Result<CertifiedKey, TlsError>) {
    let cert = match read("certificate", &files.cert) {
        Ok(c) => c,
        Err(e) => return (None, Err(e)),
    };
    let key = match read("private key", &files.key) {
        Ok(k) => k,
        Err(e) => return (None, Err(e)),
    };
    let hash = content_hash(&[&cert, &key]);
    (Some(hash), parse_pair(&files.cert, &cert, &files.key, &key))
}

/// A certificate's notAfter in Unix seconds, or `None` when it cannot be parsed as X.509.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

/// Sets the expiry gauge from the certificate in `key`; 0 when it cannot be read.
fn record_expiry(metrics: &Metrics, key: &CertifiedKey) {
    let ts = key.end_entity_cert().ok().and_then(not_after).unwrap_or(0);
    metrics.tls_certificate_expiry.set(ts);
}

/// The SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads and checks the certificate and key once (before binding).
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    load_files(files).1
}

/// Hands rustls the current certificate; swapped whole by the reload task.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingResolver {
    pub fn new(key: CertifiedKey) -> ReloadingResolver {
        ReloadingResolver {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// The certificate new connections get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Checks client certificates against the current client CA bundle; swapped whole by the
/// reload task when the bundle changes, so a rotated CA needs no restart.
#[derive(Debug)]
pub struct ReloadingClientVerifier {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl ReloadingClientVerifier {
    fn new(verifier: Arc<dyn ClientCertVerifier>) -> ReloadingClientVerifier {
        ReloadingClientVerifier {
            current: ArcSwap::from_pointee(verifier),
        }
    }

    fn store(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(verifier));
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current.load().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current.load().client_auth_mandatory()
    }

    /// No CA names in the CertificateRequest: they would have to outlive a swap of the bundle.
    /// The hints are optional; a client with one certificate (kube-apiserver's webhook
    /// kubeconfig) sends it either way, and the chain is still checked against the bundle.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The client CA bundle being enforced, and what the reload task needs to follow it.
struct ClientCa {
    path: PathBuf,
    verifier: Arc<ReloadingClientVerifier>,
    hash: [u8; 32],
}

/// The loaded TLS configuration and the resolver the reload task updates.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<ReloadingResolver>,
    files: TlsFiles,
    initial_hash: [u8; 32],
    interval: Duration,
    client_ca: Option<ClientCa>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads and checks the certificate, key and client CA, and builds the server configuration.
    /// Nothing is bound or spawned yet.
    pub fn load(opts: &TlsOptions) -> Result<Tls, TlsError> {
        let (hash, key) = load_files(&opts.files);
        let key = key?;
        let initial_hash = hash.expect("a parsed pair was read");
        let resolver = Arc::new(ReloadingResolver::new(key));
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?;
        let mut client_ca = None;
        let builder = match &opts.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let (hash, verifier) = load_client_ca(path, provider)?;
                let verifier = Arc::new(ReloadingClientVerifier::new(verifier));
                client_ca = Some(ClientCa {
                    path: path.clone(),
                    verifier: verifier.clone(),
                    hash,
                });
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            config: Arc::new(config),
            resolver,
            files: opts.files.clone(),
            initial_hash,
            interval: opts.reload_interval,
            client_ca,
        })
    }

    /// Starts polling the files for rotation. The task ends when the resolver is dropped.
    pub fn spawn_reloader(&self, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        record_expiry(&metrics, &self.resolver.current());
        let resolver = Arc::downgrade(&self.resolver);
        let files = self.files.clone();
        let hash = self.initial_hash;
        let interval = self.interval;
        if let Some(ca) = &self.client_ca {
            tokio::spawn(follow(
                ClientCaBundle {
                    verifier: Arc::downgrade(&ca.verifier),
                    path: ca.path.clone(),
                },
                ca.hash,
                interval,
                metrics.clone(),
            ));
        }
        tokio::spawn(follow(
            ServingPair { resolver, files },
            hash,
            interval,
            metrics,
        ))
    }
}

/// Reads and checks a client CA bundle: its content hash and a verifier for it.
fn load_client_ca(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<([u8; 32], Arc<dyn ClientCertVerifier>), TlsError> {
    let pem = read("client CA", path)?;
    let hash = content_hash(&[&pem]);
    Ok((hash, client_verifier(path, &pem, provider)?))
}

fn client_verifier(
    path: &Path,
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let certs = parse_certs("client CA", path, pem)?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// Logs and counts a changed certificate or CA file that cannot be used (yet).
fn refuse(what: &str, kept: &str, error: &TlsError, metrics: &Metrics) {
    metrics.tls_reload_failures.inc();
    tracing::warn!(error = %error, "{what} changed but cannot be used yet; {kept}");
}

/// The serving certificate and key.
struct ServingPair {
    resolver: Weak<ReloadingResolver>,
    files: TlsFiles,
}

impl Followed for ServingPair {
    type Value = CertifiedKey;
    type Error = TlsError;
    // A pair is written file by file: the in-between states are one event.
    const REPORT: Report = Report::EachError;

    fn read(&self) -> Reading<CertifiedKey, TlsError> {
        load_files(&self.files)
    }

    fn alive(&self) -> bool {
        self.resolver.strong_count() > 0
    }

    fn apply(&self, key: CertifiedKey, metrics: &Metrics) {
        let Some(resolver) = self.resolver.upgrade() else {
            return;
        };
        let fp = key.end_entity_cert().map(fingerprint).unwrap_or_default();
        record_expiry(metrics, &key);
        resolver.store(key);
        metrics.tls_reloads.inc();
        tracing::info!(cert = %self.files.cert.display(), fingerprint = %fp, "serving a rotated TLS certificate");
    }

    fn refuse(&self, error: &TlsError, metrics: &Metrics) {
        refuse(
            "TLS certificate files",
            "still serving the previous certificate",
            error,
            metrics,
        );
    }
}

/// The client CA bundle.
struct ClientCaBundle {
    verifier: Weak<ReloadingClientVerifier>,
    path: PathBuf,
}

impl Followed for ClientCaBundle {
    type Value = Arc<dyn ClientCertVerifier>;
    type Error = TlsError;
    const REPORT: Report = Report::EachError;

    fn read(&self) -> Reading<Arc<dyn ClientCertVerifier>, TlsError> {
        match read("client CA", &self.path) {
            Ok(pem) => (
                Some(content_hash(&[&pem])),
                client_verifier(&self.path, &pem, provider()),
            ),
            Err(e) => (None, Err(e)),
        }
    }

    fn alive(&self) -> bool {
        self.verifier.strong_count() > 0
    }

    fn apply(&self, verifier: Arc<dyn ClientCertVerifier>, metrics: &Metrics) {
        let Some(current) = self.verifier.upgrade() else {
            return;
        };
        current.store(verifier);
        metrics.tls_reloads.inc();
        tracing::info!(client_ca = %self.path.display(), "enforcing a rotated client CA bundle");
    }

    fn refuse(&self, error: &TlsError, metrics: &Metrics) {
        refuse(
            "client CA file",
            "still enforcing the previous client CA bundle",
            error,
            metrics,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::certs::{CertRequest, generate};

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn not_after_reads_the_certificates_validity() {
        let g = generate(&CertRequest::for_localhost(None, 90)).unwrap();
        let der = CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let got = not_after(&der).expect("a parsable certificate");
        assert!((got - (now + 90 * 86_400)).abs() < 60, "{got} vs {now}");
        assert_eq!(
            not_after(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }

    #[test]
    fn missing_cert_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.crt"),
            key: dir.path().join("nope.key"),
        };
        let e = load_certified_key(&files).unwrap_err().to_string();
        assert!(e.starts_with("failed to read certificate file "), "{e}");
        assert!(e.contains("nope.crt"), "{e}");
    }

    #[test]
    fn not_pem_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        let cert = write(dir.path(), "tls.crt", b"hello, not a certificate");
        let key = write(dir.path(), "tls.key", g.key_pem.as_bytes());
        let e = load_certified_key(&TlsFiles { cert, key })
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.crt is not PEM"), "{e}");

        let cert = write(dir.path(), "tls.crt", g.cert_pem.as_bytes());
        let key = write(dir.path(), "tls.key", g.cert_pem.as_bytes());
        let e = load_certified_key(&TlsFiles { cert, key })
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.key holds no private key"), "{e}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        let b = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        let cert = write(dir.path(), "tls.crt", a.cert_pem.as_bytes());
        let key = write(dir.path(), "tls.key", b.key_pem.as_bytes());
        let e = load_certified_key(&TlsFiles { cert, key })
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match the certificate in"), "{e}");
        assert!(e.contains("tls.key") && e.contains("tls.crt"), "{e}");
    }

    #[test]
    fn matching_pair_loads_with_client_ca_and_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        g.write_to(dir.path()).unwrap();
        let tls = Tls::load(&TlsOptions {
            files: TlsFiles {
                cert: dir.path().join("tls.crt"),
                key: dir.path().join("tls.key"),
            },
            client_ca: Some(dir.path().join("ca.crt")),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        })
        .unwrap();
        assert_eq!(
            tls.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn client_ca_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        g.write_to(dir.path()).unwrap();
        let ca = write(dir.path(), "empty-ca.crt", b"");
        let e = Tls::load(&TlsOptions {
            files: TlsFiles {
                cert: dir.path().join("tls.crt"),
                key: dir.path().join("tls.key"),
            },
            client_ca: Some(ca),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("client CA file") && e.contains("empty-ca.crt"),
            "{e}"
        );
    }
}
