//! `[daemon] web` and the keys beside it: where the web console listens, the credentials it
//! takes (a token file, a password hash), the origins it trusts and how long a login lasts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::read::Fields;
use super::validate::Validator;

/// How long a login lasts when `web_session` is not given.
pub const DEFAULT_WEB_SESSION: Duration = Duration::from_secs(12 * 3600);

/// The web console's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether a random token (kept in `token_file`) lets people in.
    pub token: bool,
    /// Where the token is kept; `None`: beside the control socket.
    pub token_file: Option<PathBuf>,
    /// An Argon2 PHC string (`$argon2id$v=19$...`): the password that lets people in.
    pub password_hash: Option<String>,
    /// Origins (`https://desk.example.com`) a browser may come from besides the address the
    /// page was loaded from (a reverse proxy's name).
    pub origins: Vec<String>,
    /// How long a login lasts.
    pub session: Duration,
}

impl Validator<'_> {
    /// The web console's keys of `[daemon]`: `None` when `web` is not set (then none of the
    /// others may be).
    pub(super) fn web(&mut self, f: &mut Fields<'_>, dir: &Path) -> Option<WebConfig> {
        let addr = self.string(f, "web");
        let token = self.boolean(f, "web_token");
        let token_file = self.string(f, "web_token_file");
        let password_hash = self.string(f, "web_password_hash");
        let origins = self.strings(f, "web_origins");
        let session = self.duration_text(f, "web_session");
        let Some(addr) = addr else {
            for (key, given) in [
                ("web_token", token.as_ref().map(|v| v.span())),
                ("web_token_file", token_file.as_ref().map(|v| v.span())),
                (
                    "web_password_hash",
                    password_hash.as_ref().map(|v| v.span()),
                ),
                ("web_origins", origins.as_ref().map(|v| v.span())),
                ("web_session", session.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = given {
                    self.error(
                        Some(span),
                        Some(f.key(key)),
                        "means nothing without `web`: set web = \"127.0.0.1:9899\" to serve the \
                         web console",
                    );
                }
            }
            return None;
        };
        let parsed = match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    Some(addr.span()),
                    Some(f.key("web")),
                    format!(
                        "{:?} is not an ip:port address (write e.g. \"127.0.0.1:9899\")",
                        addr.get_ref()
                    ),
                );
                None
            }
        };
        let hash = password_hash.and_then(|h| match check_password_hash(h.get_ref()) {
            Ok(()) => Some(h.into_inner()),
            Err(why) => {
                self.error(Some(h.span()), Some(f.key("web_password_hash")), why);
                None
            }
        });
        let mut allowed = Vec::new();
        for o in origins.map(|o| o.into_inner()).unwrap_or_default() {
            match normal_origin(o.get_ref()) {
                Some(n) => allowed.push(n),
                None => self.error(
                    Some(o.span()),
                    Some(f.key("web_origins")),
                    format!(
                        "{:?} is not an origin: write a scheme and a host, and a port if not the \
                         usual one, with no path (e.g. \"https://desk.example.com\")",
                        o.get_ref()
                    ),
                ),
            }
        }
        let session = match session {
            Some(s) => match self.duration(&s, f.key("web_session")) {
                Some(d) if d >= Duration::from_secs(60) => d,
                Some(_) => {
                    self.error(
                        Some(s.span()),
                        Some(f.key("web_session")),
                        "a login must last at least a minute (\"1m\")",
                    );
                    DEFAULT_WEB_SESSION
                }
                None => DEFAULT_WEB_SESSION,
            },
            None => DEFAULT_WEB_SESSION,
        };
        let use_token = token.as_ref().is_none_or(|t| *t.get_ref());
        if !use_token && hash.is_none() {
            let span = token.as_ref().map(|t| t.span());
            self.error(
                span,
                Some(f.key("web_token")),
                "web_token = false leaves the web console without a credential: set \
                 web_password_hash (`switchboard web-password` makes one)",
            );
        }
        let token_file = token_file.map(|p| dir.join(p.into_inner()));
        let addr_ip = parsed?.ip();
        // A credential someone chose, not only the token made at first start: a console that
        // others can reach must not open on a secret nobody set up on purpose.
        let configured = hash.is_some() || (use_token && token_file.is_some());
        if !addr_ip.is_loopback() && !configured {
            self.error(
                Some(addr.span()),
                Some(f.key("web")),
                format!(
                    "the web console on {} is reachable from other machines and no credential \
                     is configured: set web_password_hash (`switchboard web-password` makes \
                     one) or web_token_file, or bind 127.0.0.1",
                    addr.get_ref()
                ),
            );
            return None;
        }
        Some(WebConfig {
            addr: parsed?,
            token: use_token,
            token_file: if use_token { token_file } else { None },
            password_hash: hash,
            origins: allowed,
            session,
        })
    }
}

/// The Argon2id PHC string of `password` (with a fresh salt and the default costs: 19 MiB,
/// 2 passes, as OWASP recommends), for `web_password_hash`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `s` is an Argon2 PHC string the console can check passwords against.
pub fn check_password_hash(s: &str) -> Result<(), String> {
    let parsed = argon2::password_hash::phc::PasswordHash::new(s).map_err(|e| {
        format!(
            "not a password hash ({e}): expected an Argon2 PHC string like \
             \"$argon2id$v=19$m=19456,t=2,p=1$...\" (`switchboard web-password` makes one)"
        )
    })?;
    let alg = parsed.algorithm.as_str();
    if !alg.starts_with("argon2") {
        return Err(format!(
            "a {alg:?} hash: only Argon2 hashes are taken (`switchboard web-password` makes one)"
        ));
    }
    if parsed.hash.is_none() {
        return Err("the PHC string has no hash part".into());
    }
    Ok(())
}

/// `scheme://host[:port]` lowercased, or `None` for anything else (a path, no host).
pub(super) fn normal_origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_host_only() {
        assert_eq!(
            normal_origin("HTTPS://Desk.Example.com").as_deref(),
            Some("https://desk.example.com")
        );
        assert_eq!(
            normal_origin("http://[::1]:9899").as_deref(),
            Some("http://[::1]:9899")
        );
        for bad in [
            "desk.example.com",
            "https://desk.example.com/",
            "ftp://x",
            "https://",
            "https://a b",
        ] {
            assert_eq!(normal_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_argon2_phc_strings_are_password_hashes() {
        let good = "$argon2id$v=19$m=256,t=1,p=1$c29tZXNhbHQxMjM0$0vhM6lt0hD4LCVuO6w6mGhyqcBUhXrZ4hGZ3l5Nn3Uo";
        assert_eq!(check_password_hash(good), Ok(()));
        assert!(check_password_hash("hunter2").is_err());
        assert!(check_password_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    }
}
