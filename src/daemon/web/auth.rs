//! Who may use the web console: the credentials (the token, a password hash), the logins they
//! open (a random id in an `HttpOnly`, `SameSite=Strict` cookie), failed attempts counted per
//! address, and which hosts and origins a request may name.
//!
//! Every request must name a host that cannot be a rebound DNS name (an IP address,
//! `localhost`, or the host of a configured origin), and every request that changes something,
//! and every WebSocket, must come from the page's own origin (or a configured one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;

use super::super::httpd::Request;

/// The cookie that carries a login.
pub(crate) const COOKIE: &str = "switchboard_login";
/// Logins kept at once; past it the one that ends first goes.
const MAX_LOGINS: usize = 256;
/// Failed attempts an address may make in [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered, at most.
const MAX_FAILING: usize = 4096;
/// Password checks (Argon2, tens of milliseconds each on the loop) in [`FAILURE_WINDOW`], all
/// addresses together: bounds what guessing can cost everyone else.
const MAX_PASSWORD_CHECKS: u32 = 30;
/// Longest operator name kept.
const NAME_MAX: usize = 32;

/// One login.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    /// The name its operator gave (may be empty).
    pub(crate) name: String,
    pub(crate) expires: Instant,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a credential.
    Wrong,
    /// Too many failures from that address (or password checks overall) lately.
    TooMany,
}

/// The credentials, the logins and the failures.
#[derive(Debug)]
pub(crate) struct Auth {
    token: Option<String>,
    password_hash: Option<String>,
    lifetime: Duration,
    /// Extra origins (`https://desk.example.com`), lowercased.
    origins: Vec<String>,
    logins: HashMap<String, Login>,
    failures: HashMap<IpAddr, (u32, Instant)>,
    /// Password checks in the current window, and when it began.
    checks: (u32, Instant),
}

impl Auth {
    pub(crate) fn new(
        token: Option<String>,
        password_hash: Option<String>,
        lifetime: Duration,
        origins: Vec<String>,
        now: Instant,
    ) -> Auth {
        Auth {
            token,
            password_hash,
            lifetime,
            origins,
            logins: HashMap::new(),
            failures: HashMap::new(),
            checks: (0, now),
        }
    }

    /// How long a login lasts.
    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Open a login for whoever at `ip` gave `credential`: its id.
    pub(crate) fn login(
        &mut self,
        ip: IpAddr,
        credential: &str,
        name: &str,
        now: Instant,
    ) -> Result<String, Refused> {
        if let Some(&(n, since)) = self.failures.get(&ip)
            && n >= MAX_FAILURES
            && now.saturating_duration_since(since) < FAILURE_WINDOW
        {
            return Err(Refused::TooMany);
        }
        if !self.check(credential, now)? {
            if self.failures.len() >= MAX_FAILING {
                self.failures
                    .retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
            }
            if self.failures.len() < MAX_FAILING {
                let e = self.failures.entry(ip).or_insert((0, now));
                if now.saturating_duration_since(e.1) >= FAILURE_WINDOW {
                    *e = (0, now);
                }
                e.0 += 1;
            }
            return Err(Refused::Wrong);
        }
        self.failures.remove(&ip);
        self.expire(now);
        if self.logins.len() >= MAX_LOGINS
            && let Some(first) = self
                .logins
                .iter()
                .min_by_key(|(_, l)| l.expires)
                .map(|(id, _)| id.clone())
        {
            self.logins.remove(&first);
        }
        let id = random_hex(32);
        self.logins.insert(
            id.clone(),
            Login {
                name: clean_name(name),
                expires: now + self.lifetime,
            },
        );
        Ok(id)
    }

    /// Whether `credential` is the token or the password; `Err` when the password may not be
    /// checked now (too many checks lately).
    fn check(&mut self, credential: &str, now: Instant) -> Result<bool, Refused> {
        if credential.is_empty() {
            return Ok(false);
        }
        if let Some(token) = &self.token
            && same(token.as_bytes(), credential.trim().as_bytes())
        {
            return Ok(true);
        }
        let Some(hash) = &self.password_hash else {
            return Ok(false);
        };
        if now.saturating_duration_since(self.checks.1) >= FAILURE_WINDOW {
            self.checks = (0, now);
        }
        if self.checks.0 >= MAX_PASSWORD_CHECKS {
            return Err(Refused::TooMany);
        }
        self.checks.0 += 1;
        let Ok(parsed) = PasswordHash::new(hash) else {
            return Ok(false);
        };
        Ok(argon2::Argon2::default()
            .verify_password(credential.as_bytes(), &parsed)
            .is_ok())
    }

    /// The login a request's cookie names, if it is open: its id and what it holds.
    pub(crate) fn login_of(&self, req: &Request, now: Instant) -> Option<(&str, &Login)> {
        let id = cookie(req, COOKIE)?;
        let (id, login) = self.logins.get_key_value(id)?;
        (login.expires > now).then_some((id.as_str(), login))
    }

    /// Whether login `id` is still open.
    pub(crate) fn is_open(&self, id: &str, now: Instant) -> bool {
        self.logins.get(id).is_some_and(|l| l.expires > now)
    }

    pub(crate) fn logout(&mut self, id: &str) {
        self.logins.remove(id);
    }

    /// Forget ended logins and old failures.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.logins.retain(|_, l| l.expires > now);
        self.failures
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
    }

    /// Whether the request's `Host` cannot be a name an attacker points at us (DNS
    /// rebinding): an IP address, `localhost`, or the host of a configured origin.
    pub(crate) fn host_ok(&self, req: &Request) -> bool {
        let Some(host) = req.header("host") else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        if self
            .origins
            .iter()
            .any(|o| o.split_once("://").is_some_and(|(_, h)| h == host))
        {
            return true;
        }
        let name = match host.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((ip, rest)) if rest.is_empty() || port_ok(rest) => ip.to_string(),
                _ => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, port)) if port_ok(&format!(":{port}")) => name.to_string(),
                Some(_) => return false,
                None => host.clone(),
            },
        };
        name == "localhost" || name.parse::<IpAddr>().is_ok()
    }

    /// Whether the request comes from the page itself (or a configured origin): for requests
    /// that change something and for the WebSocket. A missing `Origin` is refused.
    pub(crate) fn origin_ok(&self, req: &Request) -> bool {
        let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) else {
            return false;
        };
        let origin = origin.trim().to_ascii_lowercase();
        let host = host.trim().to_ascii_lowercase();
        origin == format!("http://{host}")
            || origin == format!("https://{host}")
            || self.origins.contains(&origin)
    }
}

/// `:PORT` with a number.
fn port_ok(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| p.parse::<u16>().is_ok())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers_named("cookie")
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value of a login.
pub(crate) fn login_cookie(id: &str, lifetime: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        lifetime.as_secs()
    )
}

/// The `Set-Cookie` value that ends a login in the browser.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An operator's name as others see it: letters, digits, spaces and `-_.@'`, at most
/// [`NAME_MAX`] characters.
pub(crate) fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '@' | '\''))
        .take(NAME_MAX)
        .collect::<String>()
        .trim()
        .to_string()
}

/// `bytes` random bytes, in hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the system's random source failed: {e}"),
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Argon2id of "correct horse", with small costs so that the test is quick.
    pub(crate) const HASH: &str = crate::daemon::web::TEST_PASSWORD_HASH;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn auth(now: Instant) -> Auth {
        Auth::new(
            Some("t0ken-t0ken-t0ken".into()),
            Some(HASH.into()),
            Duration::from_secs(60),
            vec!["https://desk.example.com".into()],
            now,
        )
    }

    #[test]
    fn the_token_or_the_password_opens_a_login_that_the_cookie_names() {
        let now = Instant::now();
        let mut a = auth(now);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let id = a
            .login(ip, "t0ken-t0ken-t0ken", "alice<script>", now)
            .unwrap();
        assert_eq!(id.len(), 64);
        let r = req(&[("Cookie", &format!("x=1; {COOKIE}={id}"))]);
        let (found, login) = a.login_of(&r, now).unwrap();
        assert_eq!((found, login.name.as_str()), (id.as_str(), "alicescript"));
        assert!(a.login(ip, "correct horse", "", now).is_ok());
        assert_eq!(a.login(ip, "t0ken", "", now), Err(Refused::Wrong));
        assert_eq!(a.login(ip, "", "", now), Err(Refused::Wrong));
        // It ends with its lifetime, or at logout.
        assert!(a.login_of(&r, now + Duration::from_secs(61)).is_none());
        a.logout(&id);
        assert!(a.login_of(&r, now).is_none());
        let other = req(&[("Cookie", &format!("{COOKIE}=deadbeef"))]);
        assert!(a.login_of(&other, now).is_none());
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_for_a_while() {
        let now = Instant::now();
        let mut a = auth(now);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.login(ip, "nope", "", now), Err(Refused::Wrong));
        }
        assert_eq!(
            a.login(ip, "t0ken-t0ken-t0ken", "", now),
            Err(Refused::TooMany)
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(a.login(other, "t0ken-t0ken-t0ken", "", now).is_ok());
        let later = now + FAILURE_WINDOW;
        assert!(a.login(ip, "t0ken-t0ken-t0ken", "", later).is_ok());
    }

    #[test]
    fn password_checks_are_bounded_for_everyone() {
        let now = Instant::now();
        let mut a = Auth::new(
            None,
            Some(HASH.into()),
            Duration::from_secs(60),
            vec![],
            now,
        );
        for i in 0..MAX_PASSWORD_CHECKS {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            assert_eq!(a.login(ip, "guess", "", now), Err(Refused::Wrong));
        }
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(a.login(ip, "correct horse", "", now), Err(Refused::TooMany));
        assert!(
            a.login(ip, "correct horse", "", now + FAILURE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn only_hosts_that_cannot_be_rebound_are_served() {
        let a = auth(Instant::now());
        for ok in [
            "127.0.0.1:9899",
            "localhost:9899",
            "LOCALHOST",
            "[::1]:9899",
            "192.0.2.7",
            "desk.example.com",
        ] {
            assert!(a.host_ok(&req(&[("Host", ok)])), "{ok}");
        }
        for bad in [
            "evil.example:9899",
            "127.0.0.1.evil.example",
            "[::1]x",
            "127.0.0.1:port",
            "",
        ] {
            assert!(!a.host_ok(&req(&[("Host", bad)])), "{bad}");
        }
        assert!(!a.host_ok(&req(&[])));
    }

    #[test]
    fn only_the_page_itself_or_a_listed_origin_may_change_things() {
        let a = auth(Instant::now());
        let host = ("Host", "127.0.0.1:9899");
        assert!(a.origin_ok(&req(&[host, ("Origin", "http://127.0.0.1:9899")])));
        assert!(a.origin_ok(&req(&[host, ("Origin", "https://desk.example.com")])));
        for bad in ["http://evil.example", "null", "http://127.0.0.1:9898", ""] {
            assert!(!a.origin_ok(&req(&[host, ("Origin", bad)])), "{bad}");
        }
        assert!(!a.origin_ok(&req(&[host])), "no Origin");
    }

    #[test]
    fn names_and_cookies_carry_no_markup_or_separators() {
        assert_eq!(clean_name("  Bob \u{1b}[31m<b>\n"), "Bob 31mb");
        assert_eq!(clean_name(&"x".repeat(100)).len(), NAME_MAX);
        let c = login_cookie("abc", Duration::from_secs(3600));
        assert_eq!(
            c,
            "switchboard_login=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict"
        );
        assert!(clear_cookie().contains("Max-Age=0"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
