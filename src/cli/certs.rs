//! `certs`: a CA and a serving certificate for the webhook's Service, written as `ca.crt`,
//! `tls.crt` and `tls.key`; prints the base64 `caBundle` for the webhook configurations.

use std::path::PathBuf;

use clap::Args;

use crate::server::certs::{self, CertRequest};

/// Every flag of `certs` is also read from `SPW_CERTS_<FLAG>`, and from no other variable.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service (the certificate is for NAME, NAME.NS, NAME.NS.svc and
    /// NAME.NS.svc.cluster.local).
    #[arg(long, env = "SPW_CERTS_SERVICE", value_name = "NAME", value_parser = dns_label)]
    pub service: String,
    /// Namespace of the Service.
    #[arg(long, env = "SPW_CERTS_NAMESPACE", value_name = "NS", value_parser = dns_label)]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into (created if missing; existing files
    /// are replaced).
    #[arg(long, env = "SPW_CERTS_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of the CA and the certificate, in days.
    #[arg(long, env = "SPW_CERTS_DAYS", value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
}

/// Service and namespace names are RFC 1123 labels.
fn dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)"
        ))
    }
}

pub fn run(args: CertsArgs) -> anyhow::Result<i32> {
    let generated = certs::generate(&CertRequest::for_service(
        &args.service,
        &args.namespace,
        args.days,
    ))?;
    generated.write_to(&args.out)?;
    eprintln!(
        "wrote {ca}, {crt} and {key} for {svc}.{ns}.svc (valid {days} days); caBundle:",
        ca = args.out.join(certs::CA_FILE).display(),
        crt = args.out.join(certs::CERT_FILE).display(),
        key = args.out.join(certs::KEY_FILE).display(),
        svc = args.service,
        ns = args.namespace,
        days = args.days,
    );
    println!("{}", generated.ca_bundle_base64());
    Ok(0)
}
