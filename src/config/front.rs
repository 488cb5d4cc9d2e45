//! What stands in front of a TCP listener's bytes: `[listener.tls]` and `proxy_protocol`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_handlers::Proto;
use toml::Spanned;
use toml::de::DeValue;

use super::read::{Fields, Value};
use super::validate::Validator;
use crate::acl::Cidr;
use crate::tls::{SniCert, TlsSettings};

/// How long a TLS client may take to finish its handshake when `handshake_timeout` is not
/// given.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send its PROXY header when `proxy_timeout` is not given.
pub(super) const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);

const TLS_KEYS: &[&str] = &["cert", "key", "certs", "client_ca", "handshake_timeout"];
const SNI_KEYS: &[&str] = &["cert", "key"];
const PROXY_KEYS: &[&str] = &["versions", "trusted"];

/// A TCP listener's `proxy_protocol`: which header versions it reads, and from whom.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocol {
    /// Accept version 1 (text) headers.
    pub v1: bool,
    /// Accept version 2 (binary) headers.
    pub v2: bool,
    /// The balancers: only connections from these addresses are served (each must start
    /// with a header).
    pub trusted: Vec<Cidr>,
    /// How long a connection may take to send its header.
    pub timeout: Duration,
}

impl ProxyProtocol {
    /// Whether a connection from `ip` may send a header.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = crate::acl::canonical(ip);
        self.trusted.iter().any(|c| c.contains(ip))
    }
}

impl Validator<'_> {
    /// A sub-table's keys, or an error when the value is not a table.
    fn table<'a>(
        &mut self,
        label: &str,
        v: Value<'a>,
        known: &[&str],
        how: &str,
    ) -> Option<Fields<'a>> {
        let span = v.span();
        match v.into_inner() {
            DeValue::Table(t) => Some(self.fields(label, span, t, known, &[])),
            other => {
                self.error(
                    Some(span),
                    Some(label.to_string()),
                    format!("expected a table ({how}), found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// `[listener.tls]`, its files read and checked now.
    pub(super) fn tls(
        &mut self,
        f: &mut Fields<'_>,
        proto: Option<Proto>,
        dir: &Path,
    ) -> Option<TlsSettings> {
        let v = f.take_value("tls")?;
        let span = v.span();
        if proto == Some(Proto::Udp) {
            self.error(
                Some(span),
                Some(f.key("tls")),
                "TLS applies to TCP listeners only (DTLS, TLS over UDP, is not supported); \
                 remove the tls table or use protocol = \"tcp\"",
            );
            return None;
        }
        let mut t = self.table(&f.key("tls"), v, TLS_KEYS, "write it as [listener.tls]")?;
        self.require(
            &t,
            &[
                ("cert", "a PEM certificate file"),
                ("key", "its PEM private key file"),
            ],
        );
        // Where each file was named, to put an error in one on the key that named it.
        let mut places: Vec<(PathBuf, std::ops::Range<usize>, String)> = Vec::new();
        let mut path = |me: &mut Self, t: &mut Fields<'_>, key: &str| {
            let s: Spanned<String> = me.string(t, key)?;
            let p = dir.join(s.get_ref());
            places.push((p.clone(), s.span(), t.key(key)));
            Some(p)
        };
        let cert = path(self, &mut t, "cert");
        let key = path(self, &mut t, "key");
        let client_ca = path(self, &mut t, "client_ca");
        let mut sni = Vec::new();
        if let Some(v) = t.take_value("certs") {
            let how = "server names, each with its cert and key, like \
                       certs.\"chat.example.org\" = { cert = \"chat.pem\", key = \"chat.key\" }";
            let label = t.key("certs");
            let span = v.span();
            let names = match v.into_inner() {
                DeValue::Table(names) => names,
                other => {
                    let found = other.type_str();
                    self.error(
                        Some(span),
                        Some(label.clone()),
                        format!("expected a table ({how}), found {found}"),
                    );
                    Default::default()
                }
            };
            {
                for (name, v) in names {
                    let name = name.get_ref().to_string();
                    let label = format!("{label} {name:?}");
                    let Some(mut c) = self.table(&label, v, SNI_KEYS, how) else {
                        continue;
                    };
                    self.require(&c, &[("cert", "a PEM file"), ("key", "a PEM file")]);
                    let (cert, key) = (path(self, &mut c, "cert"), path(self, &mut c, "key"));
                    if let (Some(cert), Some(key)) = (cert, key) {
                        sni.push(SniCert { name, cert, key });
                    }
                }
            }
        }
        let handshake_timeout = self
            .duration_text(&mut t, "handshake_timeout")
            .and_then(|d| self.positive(&d, t.key("handshake_timeout")))
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        let (cert, key) = (cert?, key?);
        match TlsSettings::load(cert, key, sni, client_ca, handshake_timeout) {
            Ok(s) => Some(s),
            Err(e) => {
                let (span, key) = places
                    .iter()
                    .find(|(p, _, _)| *p == e.file)
                    .map(|(_, s, k)| (s.clone(), k.clone()))
                    .unwrap_or((span, f.key("tls")));
                self.error(Some(span), Some(key), e.to_string());
                None
            }
        }
    }

    /// `proxy_protocol = { versions = [...], trusted = [...] }` and `proxy_timeout`.
    pub(super) fn proxy_protocol(
        &mut self,
        f: &mut Fields<'_>,
        proto: Option<Proto>,
    ) -> Option<ProxyProtocol> {
        let timeout = self.duration_text(f, "proxy_timeout");
        let Some(v) = f.take_value("proxy_protocol") else {
            if let Some(t) = timeout {
                self.error(
                    Some(t.span()),
                    Some(f.key("proxy_timeout")),
                    "has no effect without proxy_protocol",
                );
            }
            return None;
        };
        let span = v.span();
        if proto == Some(Proto::Udp) {
            self.error(
                Some(span),
                Some(f.key("proxy_protocol")),
                "the PROXY protocol applies to TCP listeners only",
            );
            return None;
        }
        let how = "like { versions = [\"v1\", \"v2\"], trusted = [\"10.0.0.0/8\"] }";
        let mut t = self.table(&f.key("proxy_protocol"), v, PROXY_KEYS, how)?;
        self.require(
            &t,
            &[(
                "trusted",
                "the balancers' addresses, like [\"10.0.0.0/8\"]: only they may send a header",
            )],
        );
        let (mut v1, mut v2) = (true, true);
        if let Some(list) = self.strings(&mut t, "versions") {
            (v1, v2) = (false, false);
            for item in list.get_ref() {
                match item.get_ref().as_str() {
                    "v1" => v1 = true,
                    "v2" => v2 = true,
                    other => self.error(
                        Some(item.span()),
                        Some(t.key("versions")),
                        format!(
                            "{other:?} is not a PROXY protocol version; expected \"v1\" or \"v2\""
                        ),
                    ),
                }
            }
            if list.get_ref().is_empty() {
                self.error(
                    Some(list.span()),
                    Some(t.key("versions")),
                    "name at least one version: \"v1\", \"v2\" or both",
                );
            }
        }
        let mut trusted = Vec::new();
        for rule in self
            .strings(&mut t, "trusted")
            .into_iter()
            .flat_map(|v| v.into_inner())
        {
            match rule.get_ref().parse::<Cidr>() {
                Ok(c) => trusted.push(c),
                Err(e) => self.error(Some(rule.span()), Some(t.key("trusted")), e.to_string()),
            }
        }
        let timeout = timeout
            .and_then(|d| self.positive(&d, f.key("proxy_timeout")))
            .unwrap_or(DEFAULT_PROXY_TIMEOUT);
        Some(ProxyProtocol {
            v1,
            v2,
            trusted,
            timeout,
        })
    }

    /// A duration longer than zero.
    fn positive(&mut self, v: &Spanned<String>, key: String) -> Option<Duration> {
        let d = self.duration(v, key.clone())?;
        if d.is_zero() {
            self.error(Some(v.span()), Some(key), "must be longer than 0");
            return None;
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    fn listener(proto: &str, extra: &str) -> Result<Option<ProxyProtocol>, Vec<String>> {
        let text = format!(
            "[[listener]]\nname = \"a\"\nprotocol = \"{proto}\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"echo\"]\n{extra}\n"
        );
        parse(&text, Path::new("t.toml"), Path::new("."))
            .map(|c| c.listeners[0].proxy.clone())
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn proxy_protocol_defaults_to_both_versions_and_five_seconds() {
        let p = listener("tcp", "proxy_protocol = { trusted = [\"10.0.0.0/8\"] }")
            .unwrap()
            .unwrap();
        assert!(p.v1 && p.v2);
        assert_eq!(p.timeout, DEFAULT_PROXY_TIMEOUT);
        assert!(p.trusts("10.1.2.3".parse().unwrap()));
        assert!(p.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!p.trusts("11.0.0.1".parse().unwrap()));
        let p = listener(
            "tcp",
            "proxy_protocol = { versions = [\"v2\"], trusted = [\"::1\"] }\nproxy_timeout = \"1s\"",
        )
        .unwrap()
        .unwrap();
        assert!(!p.v1 && p.v2);
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(listener("tcp", "").unwrap(), None);
    }

    #[test]
    fn proxy_protocol_mistakes_name_the_key() {
        let e = listener("tcp", "proxy_protocol = { versions = [\"v3\"] }").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.contains("proxy_protocol trusted: missing")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains("versions: \"v3\" is not")),
            "{e:?}"
        );
        let e = listener("udp", "proxy_protocol = { trusted = [\"::1\"] }").unwrap_err();
        assert!(e[0].contains("TCP listeners only"), "{e:?}");
        let e = listener("tcp", "proxy_timeout = \"2s\"").unwrap_err();
        assert!(e[0].contains("proxy_timeout: has no effect"), "{e:?}");
        let e = listener(
            "tcp",
            "proxy_protocol = { trusted = [\"10.1.2.3/8\"], vresions = [] }",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter().any(|e| e.contains("did you mean `versions`")),
            "{e:?}"
        );
        let e = listener(
            "tcp",
            "[listener.tls]\ncert = \"/nonexistent.pem\"\nkey = \"k\"",
        )
        .unwrap_err();
        assert!(
            e[0].contains("tls cert: /nonexistent.pem: cannot read it"),
            "{e:?}"
        );
    }
}
