//! TLS listeners against real peers: Python's `ssl` module and `openssl s_client`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::proxy::ended;
use crate::util::*;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/tls_client.py");

/// A self-signed certificate for `names`, as `dir/NAME.pem` and `dir/NAME.key`.
pub(crate) fn make_cert(dir: &Path, file: &str, names: &[&str]) {
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}.key"));
    let mut args = vec!["cert", "--force", "--cert", cert.to_str().unwrap()];
    args.extend(["--key", key.to_str().unwrap()]);
    args.extend(names);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Run Python's TLS client; its JSON answer.
pub(crate) fn py(dir: &Path, addr: SocketAddr, args: &[&str]) -> Value {
    let o = Command::new("python3")
        .arg(CLIENT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("python3");
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|_| panic!("python: {out} {}", String::from_utf8_lossy(&o.stderr)))
}

/// The DER of the first certificate in a PEM file, as hex.
fn der_hex(path: &Path) -> String {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path).expect("pem");
    der.iter().map(|b| format!("{b:02x}")).collect()
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tls_echo(extra: &str) -> String {
    tcp_listener(
        "tls",
        "[\"echo\"]",
        &format!("[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n{extra}"),
    )
}

fn status(d: &Daemon) -> String {
    let sock = d.dir.path().join("ctl.sock");
    stdout(&run(&["status", "--socket", sock.to_str().unwrap()]))
}

#[test]
fn echo_over_tls_1_2_and_1_3_with_python_and_openssl() {
    let mut d = Daemon::start_with(&tls_echo(""), |dir| {
        make_cert(dir, "server", &["localhost", "127.0.0.1"])
    });
    let (dir, addr) = (d.dir.path().to_path_buf(), d.addr("tls"));
    for v in ["1.2", "1.3"] {
        let r = py(
            &dir,
            addr,
            &["--ca", "server.pem", "--version", v, "--send", "hello tls"],
        );
        assert_eq!(r["reply"], "hello tls", "{r}");
        assert_eq!(r["version"], format!("TLSv{v}"), "{r}");
    }
    let connect = addr.to_string();
    for (flag, shown) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let args = [
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            "server.pem",
            flag,
            "-brief",
        ];
        let out = openssl(&args, &dir);
        assert!(out.contains(&format!("Protocol version: {shown}")), "{out}");
        assert!(out.contains("Verification: OK"), "{out}");
    }
    let closed = d.wait_for(|v| event(v) == "session_closed" && field(v, "tls") == "1.3");
    assert!(closed.is_some(), "{}", d.seen.join("\n"));
    // The same client through the daemon's own `send --tls`.
    let o = run(&[
        "send",
        "--tls",
        "--ca",
        dir.join("server.pem").to_str().unwrap(),
        &format!("localhost:{}", addr.port()),
        "via send",
    ]);
    assert_eq!(stdout(&o), "via send", "{}", stderr(&o));
}

#[test]
fn sni_picks_the_certificate_of_the_name_asked_for() {
    let extra = "certs.\"other.test\" = { cert = \"other.pem\", key = \"other.key\" }";
    let d = Daemon::start_with(&tls_echo(extra), |dir| {
        make_cert(dir, "server", &["localhost"]);
        make_cert(dir, "other", &["other.test"]);
    });
    let (dir, addr) = (d.dir.path(), d.addr("tls"));
    let other = py(
        dir,
        addr,
        &["--ca", "other.pem", "--sni", "other.test", "--send", "x"],
    );
    assert_eq!(other["cert"], der_hex(&dir.join("other.pem")), "{other}");
    let default = py(
        dir,
        addr,
        &["--ca", "server.pem", "--sni", "localhost", "--send", "y"],
    );
    assert_eq!(
        default["cert"],
        der_hex(&dir.join("server.pem")),
        "{default}"
    );
    // An unknown name gets the default certificate, which does not carry it.
    let unknown = py(
        dir,
        addr,
        &["--ca", "server.pem", "--sni", "nobody.test", "--send", "z"],
    );
    assert!(
        unknown["error"]
            .as_str()
            .is_some_and(|e| e.contains("CERTIFICATE_VERIFY_FAILED")),
        "{unknown}"
    );
}

/// A CA, and a client certificate for `CN=alice, O=Example` that it signed.
fn client_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec![
        "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    ];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=test client CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign"]);
    openssl(&ca, dir);
    let mut csr = vec!["req", "-keyout", "alice.key", "-out", "alice.csr"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=alice/O=Example"]);
    openssl(&csr, dir);
    std::fs::write(dir.join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let sign = [
        "x509",
        "-req",
        "-in",
        "alice.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "alice.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ];
    let out = openssl(&sign, dir);
    assert!(dir.join("alice.pem").exists(), "{out}");
}

#[test]
fn mutual_tls_takes_a_signed_client_and_refuses_one_without_a_certificate() {
    let mut d = Daemon::start_with(&tls_echo("client_ca = \"ca.pem\""), |dir| {
        make_cert(dir, "server", &["localhost"]);
        client_ca(dir);
    });
    let (dir, addr) = (d.dir.path().to_path_buf(), d.addr("tls"));
    let ok = py(
        &dir,
        addr,
        &[
            "--ca",
            "server.pem",
            "--cert",
            "alice.pem",
            "--key",
            "alice.key",
            "--send",
            "it is me",
        ],
    );
    assert_eq!(ok["reply"], "it is me", "{ok}");
    let closed = d.wait_event("session_closed");
    assert!(
        field(&closed, "client_cert").contains("CN=alice"),
        "{closed}"
    );
    let refused = py(&dir, addr, &["--ca", "server.pem", "--send", "anonymous"]);
    assert!(refused["error"].is_string(), "{refused}");
    let failed = d.wait_event("handshake_failed");
    assert_eq!(field(&failed, "reason"), "handshake_failed");
    assert_eq!(field(&failed, "stage"), "tls");
}

#[test]
fn a_certificate_replaced_on_disk_or_on_reload_serves_new_sessions_and_spares_open_ones() {
    let mut d = Daemon::start_with(&tls_echo(""), |dir| {
        make_cert(dir, "server", &["localhost"])
    });
    let (dir, addr) = (d.dir.path().to_path_buf(), d.addr("tls"));
    let first = der_hex(&dir.join("server.pem"));
    // A session that stays open across both changes, through openssl's client.
    let mut open = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-CAfile",
            "server.pem",
            "-quiet",
        ])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut input = open.stdin.take().unwrap();
    let mut output = open.stdout.take().unwrap();
    let mut echo = |text: &str| {
        input.write_all(text.as_bytes()).unwrap();
        let mut got = vec![0; text.len()];
        output.read_exact(&mut got).unwrap();
        String::from_utf8(got).unwrap()
    };
    assert_eq!(echo("before\n"), "before\n");

    // Replaced on disk: the watcher sees it.
    make_cert(&dir, "server", &["localhost"]);
    let second = der_hex(&dir.join("server.pem"));
    assert_ne!(first, second);
    d.wait_event("certificate_reloaded");
    let r = py(&dir, addr, &["--ca", "server.pem", "--send", "new"]);
    assert_eq!(r["cert"], second, "{r}");
    assert_eq!(echo("still here\n"), "still here\n");

    // A key that does not belong to the certificate: kept out, the current one stays.
    make_cert(&dir, "wrong", &["localhost"]);
    std::fs::copy(dir.join("wrong.key"), dir.join("server.key")).unwrap();
    let rejected = d.wait_event("certificate_rejected");
    assert!(
        field(&rejected, "error").contains("server.key"),
        "{rejected}"
    );
    let r = py(&dir, addr, &["--ca", "server.pem", "--send", "kept"]);
    assert_eq!(r["cert"], second, "{r}");
    let sock = dir.join("ctl.sock");
    let o = run(&["reload", "--socket", sock.to_str().unwrap()]);
    assert!(stdout(&o).contains("reload refused"), "{}", stdout(&o));

    // Mended, and reloaded at once: whichever sees it first, new sessions get it.
    make_cert(&dir, "server", &["localhost"]);
    let third = der_hex(&dir.join("server.pem"));
    let o = run(&["reload", "--socket", sock.to_str().unwrap()]);
    assert!(stdout(&o).contains("reloaded"), "{}", stdout(&o));
    let r = py(&dir, addr, &["--ca", "server.pem", "--send", "third"]);
    assert_eq!(r["cert"], third, "{r}");
    assert_eq!(echo("and still\n"), "and still\n");
    drop(input);
    let _ = open.kill();
    let _ = open.wait();
}

#[test]
fn stalled_and_garbage_handshakes_are_closed_logged_and_counted() {
    let mut d = Daemon::start_with(&tls_echo("handshake_timeout = \"300ms\""), |dir| {
        make_cert(dir, "server", &["localhost"])
    });
    let addr = d.addr("tls");
    // A record header that promises a ClientHello, then nothing.
    let mut stall = connect(addr);
    stall
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let timeout = d.wait_event("handshake_failed");
    assert_eq!(field(&timeout, "reason"), "handshake_timeout", "{timeout}");
    assert!(ended(&mut stall));
    // Plain text where a ClientHello belongs: an alert, then the end; twice from another
    // address, whose second failure is counted but not logged (one line per address and
    // interval).
    for _ in 0..2 {
        let mut garbage = connect_from("127.0.0.2", addr);
        garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = garbage.read_to_end(&mut got);
        assert_eq!(got.first(), Some(&0x15), "a TLS alert record: {got:?}");
    }
    let failed = d.wait_event("handshake_failed");
    assert_eq!(field(&failed, "reason"), "handshake_failed", "{failed}");
    assert_eq!(field(&failed, "peer").split(':').next(), Some("127.0.0.2"));
    assert!(status(&d).contains("handshakes failed 3"), "{}", status(&d));
    assert_eq!(d.events("handshake_failed").count(), 2);
}

#[test]
fn tls_on_udp_and_unusable_files_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "server", &["localhost"]);
    make_cert(dir.path(), "other", &["localhost"]);
    let cfg = dir.path().join("c.toml");
    let text = format!(
        "{}{}",
        udp_listener(
            "u",
            "[\"echo\"]",
            "[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\""
        ),
        tcp_listener(
            "t",
            "[\"echo\"]",
            "[listener.tls]\ncert = \"server.pem\"\nkey = \"other.key\""
        )
    );
    std::fs::write(&cfg, text).unwrap();
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("listener \"u\" tls: TLS applies to TCP listeners only"),
        "{err}"
    );
    assert!(
        err.contains("listener \"t\" tls key:") && err.contains("does not belong"),
        "{err}"
    );
}

#[test]
fn chat_and_bench_speak_tls_and_cert_keeps_files_unless_forced() {
    let mut d = Daemon::start_with(
        &tcp_listener(
            "tls",
            "[\"bye-close\", \"echo\"]",
            "framing = \"line\"\n[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\"",
        ),
        |dir| make_cert(dir, "server", &["localhost"]),
    );
    let dir = d.dir.path().to_path_buf();
    let (ca, target) = (
        dir.join("server.pem"),
        format!("localhost:{}", d.addr("tls").port()),
    );
    let ca = ca.to_str().unwrap();
    let o = run_in(
        &["chat", "--tls", "--ca", ca, "--newline", &target],
        None,
        "one\nbye\n",
    );
    assert_eq!(stdout(&o), "< one\n< bye\n", "{}", stderr(&o));
    let o = run(&[
        "bench",
        "--tls",
        "--ca",
        ca,
        &target,
        "--mode",
        "connect",
        "--duration",
        "300ms",
        "--json",
    ]);
    let r: Value =
        serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    assert!(
        r["ops"].as_u64() > Some(0) && r["errors"] == 0 && r["tls"] == true,
        "{r}"
    );
    for mode in ["pingpong", "bulk"] {
        let o = run(&[
            "bench",
            "--tls",
            "--insecure",
            &target,
            "--mode",
            mode,
            "--connections",
            "2",
            "--duration",
            "200ms",
            "--json",
        ]);
        let r: Value =
            serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|_| panic!("{}", stderr(&o)));
        assert!(
            r["ops"].as_u64() > Some(0) && r["errors"] == 0,
            "{mode}: {r}"
        );
    }
    // A certificate the client does not trust: a clear error, exit 1.
    make_cert(&dir, "other", &["localhost"]);
    let other = dir.join("other.pem");
    let o = run(&[
        "send",
        "--tls",
        "--ca",
        other.to_str().unwrap(),
        &target,
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("TLS handshake with")
            && stderr(&o).contains("invalid peer certificate"),
        "{}",
        stderr(&o)
    );
    assert!(d.wait_event("handshake_failed").is_object());
    // `cert` does not overwrite without --force.
    let o = run(&[
        "cert",
        "localhost",
        "--cert",
        ca,
        "--key",
        dir.join("k").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("exists"),
        "{}",
        stderr(&o)
    );
}
