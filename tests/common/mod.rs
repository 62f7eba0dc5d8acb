//! Shared by the server integration tests: certificates in a temp dir, a real HTTPS client
//! (hyper's connection-level client over tokio-rustls), fixtures; the binary as a user runs it
//! ([`binary`]), the hostile corpus ([`corpus`]), a keep-alive load client ([`load`]) and what the
//! fuzz targets check ([`fuzz`]).
#![allow(dead_code)]

pub mod binary;
pub mod corpus;
pub mod fuzz;
pub mod load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use storage_policy_webhook::server::certs::{CertRequest, Generated, generate};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const POLICY: &str = include_str!("../fixtures/server/policy.yaml");
pub const PVC_NO_CLASS: &str = include_str!("../fixtures/server/pvc-no-class.review.json");
pub const PVC_RWX_BLOCK: &str = include_str!("../fixtures/server/pvc-rwx-block.review.json");
pub const PVC_RWX_NFS: &str = include_str!("../fixtures/server/pvc-rwx-nfs.review.json");

/// The one crypto provider, as `main` installs it.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA and a localhost serving certificate.
pub fn localhost_pki() -> Generated {
    generate(&CertRequest::for_localhost(None, 1)).expect("certificates")
}

/// Writes a pair as `tls.crt`/`tls.key` (plain writes, not atomic: like a careless rotation).
pub fn write_pair(dir: &Path, g: &Generated) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, &g.cert_pem).unwrap();
    std::fs::write(&k, &g.key_pem).unwrap();
    (c, k)
}

/// A client certificate (clientAuth) signed by a fresh CA: (CA PEM, chain, key).
pub fn client_pki() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        vec![cert.der().clone()],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
}

/// Client TLS settings: trusted CA PEMs, ALPN offer, optional client certificate and versions.
pub struct ClientOpts<'a> {
    pub cas: Vec<&'a str>,
    pub alpn: Vec<&'static [u8]>,
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
}

impl<'a> ClientOpts<'a> {
    /// Like kube-apiserver: HTTP/1.1 only, TLS 1.2 or 1.3.
    pub fn apiserver(ca: &'a str) -> ClientOpts<'a> {
        ClientOpts {
            cas: vec![ca],
            alpn: vec![b"http/1.1"],
            client_cert: None,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }

    pub fn config(self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for pem in self.cas {
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&self.versions)
                .unwrap()
                .with_root_certificates(roots);
        let mut cfg = match self.client_cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        // Every connection a full handshake: a resumed session presents no certificate, and the
        // rotation tests look at the one presented.
        cfg.resumption = rustls::client::Resumption::disabled();
        Arc::new(cfg)
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = tokio::time::timeout(
        Duration::from_secs(15),
        TlsConnector::from(cfg).connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await??;
    Ok(stream)
}

/// SHA-256 fingerprint of the certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> String {
    let cert = &stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0];
    storage_policy_webhook::server::tls::fingerprint(cert)
}

pub fn fingerprint_of(pem: &str) -> String {
    storage_policy_webhook::server::tls::fingerprint(
        &CertificateDer::from_pem_slice(pem.as_bytes()).unwrap(),
    )
}

/// One HTTP/1.1 keep-alive connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub fingerprint: String,
}

impl H1 {
    pub async fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> Result<H1, BoxError> {
        let stream = tls_connect(addr, cfg).await?;
        let fingerprint = presented(&stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(H1 {
            sender,
            fingerprint,
        })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), BoxError> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.into()))?;
        self.sender.ready().await?;
        let resp =
            tokio::time::timeout(Duration::from_secs(15), self.sender.send_request(req)).await??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// A request with the given headers (none added but `host`).
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), BoxError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into()))?;
        self.sender.ready().await?;
        let resp =
            tokio::time::timeout(Duration::from_secs(15), self.sender.send_request(req)).await??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn post(&mut self, path: &str, body: &str) -> Result<(StatusCode, Bytes), BoxError> {
        self.send("POST", path, body.to_owned()).await
    }
}

/// One request over HTTP/2 (ALPN h2); returns the negotiated protocol with the answer.
pub async fn h2_post(
    addr: SocketAddr,
    ca: &str,
    path: &str,
    body: &str,
) -> Result<(Vec<u8>, StatusCode, Bytes), BoxError> {
    let cfg = ClientOpts {
        alpn: vec![b"h2", b"http/1.1"],
        ..ClientOpts::apiserver(ca)
    }
    .config();
    let stream = tls_connect(addr, cfg).await?;
    let alpn = stream
        .get_ref()
        .1
        .alpn_protocol()
        .unwrap_or_default()
        .to_vec();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    Ok((alpn, status, resp.into_body().collect().await?.to_bytes()))
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// The storage class a mutate answer's patch sets, if any.
pub fn patched_class(answer: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let b64 = answer["response"]["patch"].as_str()?;
    let ops: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    ops.as_array()?
        .iter()
        .find(|op| op["path"] == "/spec/storageClassName")
        .and_then(|op| op["value"].as_str())
        .map(str::to_owned)
}

/// Polls `f` until it returns `Some` or the time is up.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
