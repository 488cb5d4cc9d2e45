//! `switchboard cert`: a self-signed certificate and its key, for trying TLS out.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};

/// Arguments of `switchboard cert`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The certificate is self-signed (an ECDSA P-256 key), valid for every NAME given: host names \
and IP addresses. Clients trust it with `--ca CERT_FILE`, Python with \
`ssl.create_default_context(cafile=CERT_FILE)`, openssl with `-CAfile CERT_FILE`.

Example:
  switchboard cert localhost 127.0.0.1 --cert server.pem --key server.key")]
pub struct CertArgs {
    /// Host names and IP addresses the certificate is for.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE", default_value = "cert.pem")]
    cert: PathBuf,
    /// Where to write the private key (PEM, PKCS#8; readable by its owner only).
    #[arg(long, value_name = "FILE", default_value = "key.pem")]
    key: PathBuf,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

/// `switchboard cert`.
pub fn cert(args: CertArgs) -> anyhow::Result<ExitCode> {
    let made = rcgen::generate_simple_self_signed(args.names.clone())
        .map_err(|e| anyhow!("cannot make a certificate for {:?}: {e}", args.names))?;
    write(
        &args.key,
        made.signing_key.serialize_pem().as_bytes(),
        0o600,
        args.force,
    )?;
    write(&args.cert, made.cert.pem().as_bytes(), 0o644, args.force)?;
    println!(
        "wrote {} (self-signed, for {}) and its key {}",
        args.cert.display(),
        args.names.join(", "),
        args.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, bytes: &[u8], mode: u32, force: bool) -> anyhow::Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).mode(mode);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} exists; choose another file or add --force",
                path.display()
            )
        } else {
            anyhow!("cannot write {}: {e}", path.display())
        }
    })?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
