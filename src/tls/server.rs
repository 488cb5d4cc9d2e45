//! A listener's TLS settings and the rustls server config built from its files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A file of the TLS settings that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for TlsError {}

/// A certificate served to clients that ask for `name` (SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    /// The server name, like `chat.example.org` or `*.example.org`.
    pub name: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// When a file was last seen changed: modification time, size and inode (`None`: missing).
pub type Stamp = Option<(SystemTime, u64, u64)>;

/// A listener's `[listener.tls]`: the files as written and what was loaded from them.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain served by default.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// More certificates, by server name.
    pub sni: Vec<SniCert>,
    /// PEM CA certificates: when set, clients must present a certificate they signed.
    pub client_ca: Option<PathBuf>,
    /// How long a client may take to finish its handshake.
    pub handshake_timeout: Duration,
    /// The server config built from the files, with what they held when it was built.
    pub loaded: Arc<Loaded>,
}

/// What was read from the files, and the config built from it.
#[derive(Debug)]
pub struct Loaded {
    /// The rustls config every new connection of the listener uses.
    pub server: Arc<ServerConfig>,
    /// Each file's bytes, in [`TlsSettings::files`] order (two loads compare by these).
    contents: Vec<Vec<u8>>,
    /// Each file's stamp before it was read.
    pub stamps: Vec<Stamp>,
}

/// Two settings are equal when they name the same files with the same contents.
impl PartialEq for TlsSettings {
    fn eq(&self, o: &TlsSettings) -> bool {
        (
            &self.cert,
            &self.key,
            &self.sni,
            &self.client_ca,
            self.handshake_timeout,
        ) == (&o.cert, &o.key, &o.sni, &o.client_ca, o.handshake_timeout)
            && self.loaded.contents == o.loaded.contents
    }
}

/// The stamp of a file now.
pub fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

impl TlsSettings {
    /// Settings for these files, loaded now.
    pub fn load(
        cert: PathBuf,
        key: PathBuf,
        sni: Vec<SniCert>,
        client_ca: Option<PathBuf>,
        handshake_timeout: Duration,
    ) -> Result<TlsSettings, TlsError> {
        let mut files = vec![cert.clone(), key.clone()];
        for s in &sni {
            files.extend([s.cert.clone(), s.key.clone()]);
        }
        files.extend(client_ca.clone());
        let names: Vec<String> = sni.iter().map(|s| s.name.clone()).collect();
        let loaded = Arc::new(build(&files, &names, client_ca.is_some())?);
        Ok(TlsSettings {
            cert,
            key,
            sni,
            client_ca,
            handshake_timeout,
            loaded,
        })
    }

    /// Every file it reads, in load order.
    pub fn files(&self) -> Vec<&Path> {
        let mut v = vec![self.cert.as_path(), self.key.as_path()];
        for s in &self.sni {
            v.extend([s.cert.as_path(), s.key.as_path()]);
        }
        v.extend(self.client_ca.as_deref());
        v
    }

    /// The files' stamps now.
    pub fn stamps_now(&self) -> Vec<Stamp> {
        self.files().into_iter().map(stamp).collect()
    }

    /// The same settings read again from the files.
    pub fn reload(&self) -> Result<TlsSettings, TlsError> {
        TlsSettings::load(
            self.cert.clone(),
            self.key.clone(),
            self.sni.clone(),
            self.client_ca.clone(),
            self.handshake_timeout,
        )
    }

    /// Whether the files hold something else than what was loaded (a content check, for
    /// files whose stamps changed).
    pub fn differs_from_disk(&self) -> bool {
        self.files()
            .into_iter()
            .zip(&self.loaded.contents)
            .any(|(f, c)| std::fs::read(f).ok().as_ref() != Some(c))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        file: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
    })
}

fn certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError {
        file: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(err("holds no PEM CERTIFICATE block".into()));
    }
    Ok(chain)
}

fn certified(
    files: &[PathBuf],
    contents: &[Vec<u8>],
    at: usize,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let (cert_file, key_file) = (&files[at], &files[at + 1]);
    let chain = certs(cert_file, &contents[at])?;
    let key = PrivateKeyDer::from_pem_slice(&contents[at + 1]).map_err(|e| TlsError {
        file: key_file.clone(),
        message: format!("no PEM private key in it (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| TlsError {
            file: key_file.clone(),
            message: match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "this key does not belong to the certificate in {}",
                    cert_file.display()
                ),
                e => format!("cannot use this key: {e}"),
            },
        })
}

/// Read `files` (cert, key, then a pair for each of `names`, then the client CA) and build
/// the config.
fn build(files: &[PathBuf], names: &[String], client_ca: bool) -> Result<Loaded, TlsError> {
    let sni = names.len();
    let stamps = files.iter().map(|f| stamp(f)).collect();
    let contents = files
        .iter()
        .map(|f| read(f))
        .collect::<Result<Vec<_>, _>>()?;
    let provider = super::provider();
    let default = certified(files, &contents, 0, &provider)?;
    let mut by_name = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = certified(files, &contents, 2 + 2 * i, &provider)?;
        by_name.push((name.to_ascii_lowercase(), key));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = if client_ca {
        let at = 2 + 2 * sni;
        let file = &files[at];
        let mut roots = RootCertStore::empty();
        for c in certs(file, &contents[at])? {
            roots.add(c).map_err(|e| TlsError {
                file: file.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError {
                file: file.clone(),
                message: format!("cannot verify clients with it: {e}"),
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let resolver = Resolver { default, by_name };
    Ok(Loaded {
        server: Arc::new(builder.with_cert_resolver(Arc::new(resolver))),
        contents,
        stamps,
    })
}

/// Picks the certificate by the name the client asked for; the default one otherwise.
#[derive(Debug)]
struct Resolver {
    default: Arc<CertifiedKey>,
    /// Lower-case names (`*.example.org` matches one label) and their certificates.
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl Resolver {
    fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let exact = self.by_name.iter().find(|(n, _)| *n == name);
        exact
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name
                    .iter()
                    .find(|(n, _)| n.strip_prefix("*.") == Some(parent))
            })
            .map(|(_, k)| k)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let picked = hello.server_name().and_then(|n| self.find(n));
        Some(picked.unwrap_or(&self.default).clone())
    }
}
