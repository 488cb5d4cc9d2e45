//! scripted-reply and the example configs: every tutorial program as a config.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::util::*;

pub(crate) fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples")
}

#[test]
fn every_example_config_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue; // haproxy.cfg: tested in proxy.rs
        }
        let o = run(&["check", "-c", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        // Log lines go to a file beside the config, never into the conversation on the
        // terminal (so the daemon's warning about a shared terminal never fires for these).
        let text = std::fs::read_to_string(&path).unwrap();
        let log_file = text
            .lines()
            .find_map(|l| l.strip_prefix("log_file = \""))
            .unwrap_or_else(|| panic!("{} has no log_file", path.display()));
        assert!(!log_file.contains('/'), "{}: {log_file}", path.display());
        n += 1;
    }
    assert!(n >= 6, "only {n} examples");
    let o = run(&["check"]);
    assert!(o.status.success(), "the embedded default: {}", stderr(&o));
}

/// An example config with its `port` line set to 0 and its log file left out (the tests
/// read the log events on stderr).
pub(crate) fn example_on_port_0(name: &str, port_line: &str) -> String {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    assert!(text.contains(port_line), "{name} has no {port_line:?}");
    assert!(text.contains("\nlog_file = "), "{name} logs to a file");
    text.replace(port_line, "port = 0")
        .lines()
        .filter(|l| !l.starts_with("log_file = "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The support-bot example with its ports set to 0 and its script path made absolute.
fn support_bot() -> Daemon {
    support_bot_with(|t| t)
}

/// The same, with the test's changes to the config's text.
pub(crate) fn support_bot_with(edit: impl FnOnce(String) -> String) -> Daemon {
    let text = example_on_port_0("support-bot.toml", "port = 8900");
    let script = examples().join("../scripts/support-bot.toml");
    let text = text.replace(
        "\"../scripts/support-bot.toml\"",
        &format!("{:?}", script.to_str().unwrap()),
    );
    Daemon::start(&edit(text))
}

#[test]
fn support_bot_greets_with_its_first_answer_over_tcp() {
    let d = support_bot();
    let mut c = connect(d.addr("bot-tcp"));
    // One answer per message: the greeting comes with the first one.
    let first = ask(&mut c, "help");
    assert!(
        first.starts_with("您好，这里是客服") && first.contains("订单 <编号>"),
        "{first}"
    );
    assert_eq!(
        ask(&mut c, "价格"),
        "基础版 99 元/月，专业版 199 元/月，年付八五折。\nBasic ¥99/month, Pro ¥199/month, 15% off when paid yearly."
    );
    assert!(ask(&mut c, "bye").contains("再见"));
    assert!(closed(&mut c));
}

/// Read what arrives until the peer has been quiet for a moment.
fn read_until_quiet(c: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    c.set_read_timeout(Some(WAIT)).unwrap();
    let n = c.read(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    c.set_read_timeout(Some(WAIT)).unwrap();
    got
}

#[test]
fn support_bot_answers_over_udp_with_the_greeting_in_the_first_reply() {
    let d = support_bot();
    let u = udp_client();
    let first = udp_ask(&u, d.addr("bot-udp"), "营业时间");
    assert!(
        first.starts_with("您好，这里是客服") && first.contains("9:00–18:00"),
        "{first}"
    );
    let second = udp_ask(&u, d.addr("bot-udp"), "price");
    assert!(second.starts_with("基础版 99 元"), "{second}");
}

#[test]
fn delayed_rule_answers_after_its_delay() {
    let d = support_bot();
    let u = udp_client();
    udp_ask(&u, d.addr("bot-udp"), "hi");
    let start = Instant::now();
    let reply = udp_ask(&u, d.addr("bot-udp"), "订单 12345");
    assert!(reply.contains("订单 12345 已发货"), "{reply}");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        start.elapsed()
    );
}

#[test]
fn what_the_bot_does_not_understand_twice_goes_to_the_operator() {
    let mut d = support_bot();
    let mut c = connect(d.addr("bot-tcp"));
    let first = ask(&mut c, "我的快递被狗吃了");
    assert!(first.contains("抱歉，我没听懂"), "{first}");
    c.write_all("真的被狗吃了".as_bytes()).unwrap();
    // The stdin console is the operator: it is shown the conversation, then the message.
    d.stdout
        .wait(&["bot-tcp/tcp", "handed to a person by scripted-reply"]);
    d.stdout.wait(&["| customer> 我的快递被狗吃了"]);
    d.stdout.wait(&["bot-tcp/tcp", "] 真的被狗吃了"]);
    let stdin = d.stdin.as_mut().unwrap();
    stdin
        .write_all("非常抱歉，马上为您处理\n".as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    assert_eq!(
        String::from_utf8(read_until_quiet(&mut c)).unwrap(),
        "非常抱歉，马上为您处理"
    );
}

/// Send `n` numbered datagrams in batches; return the numbers whose echo came back.
fn lossy_round(addr: SocketAddr, n: usize) -> Vec<usize> {
    let u = udp_client();
    let mut got = Vec::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(50) {
        for i in batch {
            u.send_to(format!("{i}").as_bytes(), addr).unwrap();
        }
        u.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0; 64];
        while let Ok((len, _)) = u.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).parse().unwrap());
        }
    }
    got.sort();
    got
}

#[test]
fn udp_loss_with_a_seed_drops_the_expected_share_every_time_the_same() {
    // 400 datagrams in quick batches: the default reply_rate spares loopback peers.
    let config = udp_listener("lossy", "[\"echo\"]", "loss = 0.3\nseed = 7");
    let a = Daemon::start(&config);
    let b = Daemon::start(&config);
    let first = lossy_round(a.addr("lossy"), 400);
    let second = lossy_round(b.addr("lossy"), 400);
    let share = 1.0 - first.len() as f64 / 400.0;
    assert!((0.2..=0.4).contains(&share), "dropped {share}");
    assert_eq!(first, second, "the same seed drops the same replies");
}

#[test]
fn udp_duplicate_and_delay() {
    let config = udp_listener("odd", "[\"echo\"]", "duplicate = 1.0\ndelay = \"200ms\"");
    let d = Daemon::start(&config);
    let u = udp_client();
    let start = Instant::now();
    assert_eq!(udp_ask(&u, d.addr("odd"), "twice"), "twice");
    assert!(start.elapsed() >= Duration::from_millis(200));
    let mut buf = [0; 16];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"twice");
}

#[test]
fn the_one_shot_tcp_server_shows_one_message_and_exits() {
    let text = example_on_port_0("tcp-oneshot.toml", "port = 8888");
    let mut d = Daemon::start(&text);
    let o = run(&[
        "send",
        "--no-reply",
        &d.addr("oneshot").to_string(),
        "welcome to Python world",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    d.stdout.wait(&["oneshot/tcp", "welcome to Python world"]);
    assert!(d.wait_exit().success());
}
