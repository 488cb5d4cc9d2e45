//! The clients' side: `--tls`, `--ca FILE`, `--insecure`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Where the system's CA certificates are on Debian and its relatives.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS options of `send`, `chat` and `bench`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ClientTls {
    /// Speak TLS to the server (TLS 1.2 or 1.3).
    #[arg(long)]
    pub tls: bool,
    /// Trust the server's certificate if one of the PEM certificates in FILE signed it (or is
    /// it), instead of the system's CAs.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// Accept any certificate the server shows (for trying things out: it gives no protection
    /// against someone in the middle).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    pub insecure: bool,
}

/// The rustls config for these options; `resume`: whether sessions are resumed (a load
/// generator measuring full handshakes turns it off).
pub fn client_config(opts: &ClientTls, resume: bool) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3");
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let file = opts.ca.as_deref().unwrap_or(Path::new(SYSTEM_ROOTS));
        builder
            .with_root_certificates(roots(file)?)
            .with_no_client_auth()
    };
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the host as given (an address or a name).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| anyhow!("{host:?} is neither a host name nor an IP address usable for TLS"))
}

fn roots(file: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .with_context(|| format!("cannot read CA certificates from {}", file.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        anyhow::bail!(
            "{} holds no usable PEM certificate; give the server's certificate or its CA with --ca",
            file.display()
        );
    }
    Ok(roots)
}

/// `--insecure`: any certificate is taken, but the handshake's signatures are still checked
/// (they prove the server holds the key of the certificate it showed).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
