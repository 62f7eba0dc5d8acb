//! Certificate generation: a CA and a serving certificate signed by it (rcgen, ECDSA P-256).
//! One function serves both the `certs` command (cluster service names) and the self-signed start
//! of `serve` (localhost names). It owns no file watching and no TLS configuration (`tls.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// File names, as in a `kubernetes.io/tls` Secret plus the CA bundle.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("failed to generate the {what}: {cause}")]
    Generate {
        what: &'static str,
        cause: rcgen::Error,
    },
    #[error("invalid validity of {0} days")]
    Validity(u32),
    #[error("failed to write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// A CA and a serving certificate signed by it, PEM encoded.
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Generated {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated").finish_non_exhaustive()
    }
}

/// What the serving certificate is for.
#[derive(Clone, Debug)]
pub struct CertRequest {
    /// Subject alternative names; strings that parse as IP addresses become IP SANs.
    pub sans: Vec<String>,
    /// Common name of the serving certificate (informational: clients check SANs).
    pub common_name: String,
    /// Validity of the CA and the serving certificate.
    pub days: u32,
}

impl CertRequest {
    /// The names kube-apiserver uses to reach a webhook Service.
    pub fn for_service(service: &str, namespace: &str, days: u32) -> CertRequest {
        CertRequest {
            sans: vec![
                service.to_owned(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ],
            common_name: format!("{service}.{namespace}.svc"),
            days,
        }
    }

    /// The names a laptop run is reached by: localhost, the loopback addresses and the hostname.
    pub fn for_localhost(hostname: Option<&str>, days: u32) -> CertRequest {
        let mut sans = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(h) = hostname
            .map(str::trim)
            .filter(|h| !h.is_empty() && *h != "localhost")
        {
            sans.push(h.to_owned());
        }
        CertRequest {
            sans,
            common_name: "localhost".to_owned(),
            days,
        }
    }
}

impl Generated {
    /// The CA bundle as webhook configurations take it (`clientConfig.caBundle`).
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(|cause| CertError::Write {
            path: dir.to_owned(),
            cause,
        })?;
        write_file(&dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// Writes a file through a temporary sibling and a rename, so a reader (the server's reloader)
/// never sees it half-written; the mode is set before any content lands.
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |cause| CertError::Write {
        path: path.to_owned(),
        cause,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(content).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Generates a fresh CA and a serving certificate for `req`, both ECDSA P-256.
pub fn generate(req: &CertRequest) -> Result<Generated, CertError> {
    let gen_err = |what| move |cause| CertError::Generate { what, cause };
    if req.days == 0 {
        return Err(CertError::Validity(req.days));
    }
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that lag behind ours.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now
        .checked_add(time::Duration::days(i64::from(req.days)))
        .ok_or(CertError::Validity(req.days))?;

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("CA key"))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA certificate"))?;
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "storage-policy-webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(gen_err("CA certificate"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("serving key"))?;
    let mut params =
        CertificateParams::new(req.sans.clone()).map_err(gen_err("serving certificate"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, req.common_name.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(gen_err("serving certificate"))?;

    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// This machine's host name, if it can be read (for the self-signed certificate's SANs).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_cover_every_way_the_api_server_calls() {
        let r = CertRequest::for_service("spw", "storage", 30);
        assert_eq!(
            r.sans,
            [
                "spw",
                "spw.storage",
                "spw.storage.svc",
                "spw.storage.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn localhost_names_include_loopback_and_hostname() {
        let r = CertRequest::for_localhost(Some("laptop\n"), 1);
        assert_eq!(r.sans, ["localhost", "127.0.0.1", "::1", "laptop"]);
        assert_eq!(CertRequest::for_localhost(None, 1).sans.len(), 3);
    }

    #[test]
    fn generated_pair_is_pem_and_key_file_is_private() {
        let g = generate(&CertRequest::for_localhost(None, 1)).unwrap();
        assert!(g.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.key_pem.contains("PRIVATE KEY-----"));
        let dir = tempfile::tempdir().unwrap();
        g.write_to(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(g.ca_bundle_base64())
            .unwrap();
        assert_eq!(bundle, g.ca_pem.as_bytes());
    }

    #[test]
    fn zero_days_is_refused() {
        assert!(matches!(
            generate(&CertRequest::for_localhost(None, 0)),
            Err(CertError::Validity(0))
        ));
    }
}
