//! TLS material: a listener's certificates and keys read from PEM files into a rustls
//! [`ServerConfig`](rustls::ServerConfig) (a default certificate, more by SNI name, and a CA for
//! client certificates), the clients' configs (`--ca`, `--insecure`), and `switchboard cert`.
//!
//! Loading is the only I/O here: the daemon drives rustls through its sans-IO connection API
//! (`src/daemon/transport/tls.rs`).

mod client;
mod selfsigned;
mod server;

pub use client::{ClientTls, client_config, server_name};
pub use selfsigned::{CertArgs, cert};
pub use server::{SniCert, Stamp, TlsError, TlsSettings, stamp};

use std::sync::Arc;

/// The one crypto provider of the program (ring: it builds with a C compiler alone).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The subject of a certificate, as `CN=alice, O=Example`; `None` when it does not parse.
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// `TLSv1_3` as `1.3`.
pub fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "1.2",
        rustls::ProtocolVersion::TLSv1_3 => "1.3",
        _ => "other",
    }
}
