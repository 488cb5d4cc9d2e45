//! The support desk end to end: the tutorial's own chat clients (p169 over TCP, p171 over UDP,
//! as printed in it, `tests/tutorial.rs`, changed only in their port, fed their input through a
//! pipe) through the support-bot example, with operators attached and without; handoff,
//! takeover, the queue, canned replies.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::bot::support_bot_with;
use crate::tutorial::{P169_CLIENT, P171_CUSTOMER};
use crate::util::*;

/// One of the tutorial's clients, running.
struct Tutorial {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines,
}

impl Tutorial {
    /// One of the tutorial's programs, with its port 8888 replaced by `addr`'s.
    fn start(program: &str, addr: SocketAddr) -> Tutorial {
        assert!(
            program.contains("8888"),
            "the program names the tutorial's port"
        );
        let code = program.replace("8888", &addr.port().to_string());
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(code)
            // Its prints reach us as they happen, not when it exits.
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take();
        let out = Lines::new(child.stdout.take().expect("stdout"));
        Tutorial { child, stdin, out }
    }

    /// The customer types a line at the program's `input()`.
    fn types(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the client");
        stdin.flush().unwrap();
    }

    /// Wait for the program to end; whether it ended well.
    fn finished(mut self) -> bool {
        self.stdin.take();
        use wait_timeout::ChildExt;
        matches!(self.child.wait_timeout(WAIT), Ok(Some(s)) if s.success())
    }
}

impl Drop for Tutorial {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Close the daemon's stdin console, so that only attached operators count.
fn without_stdin_console(d: &mut Daemon) {
    d.stdin.take();
    d.wait_event("operator_detached");
}

/// An operator attached over the daemon's control socket, greeted.
fn operator(d: &Daemon) -> Attach {
    let mut op = Attach::new(&d.dir.path().join("ctl.sock"));
    op.out.wait(&["switchboard console: you are"]);
    op
}

/// The p169 client prints each answer after this.
const TCP_ANSWER: &str = "收到服务器的响应数据: ";
/// The p171 client prints each answer after this.
const UDP_ANSWER: &str = "客户端接收数据: ";

#[test]
fn the_tutorials_tcp_client_stays_in_step_through_a_handoff_to_an_operator() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut op = operator(&d);
    let mut c = Tutorial::start(P169_CLIENT, d.addr("bot-tcp"));
    c.out.wait(&["与服务器端建立连接"]);
    // The greeting comes with the first answer, not as an answer of its own.
    c.types("价格");
    c.out.wait(&[TCP_ANSWER, "您好，这里是客服"]);
    c.out.wait(&["基础版 99 元/月"]);
    c.types("人工");
    c.out.wait(&[TCP_ANSWER, "好的，正在为您转接人工客服"]);
    c.out.wait(&["您排在第 1 位"]);
    op.out
        .wait(&["#1 bot-tcp/tcp", "handed to a person by scripted-reply"]);
    op.out.wait(&["| customer> 价格"]);
    op.out.wait(&["| customer> 人工"]);
    // The bot is silent now; the question waits for the person, who answers it.
    c.types("我的订单 12345 还没到");
    op.out.wait(&["#1 bot-tcp/tcp", "] 我的订单 12345 还没到"]);
    op.say("@1 您好，我是客服小王，马上为您查询。");
    c.out
        .wait(&[TCP_ANSWER, "您好，我是客服小王，马上为您查询。"]);
    // Said without a question waiting: it comes with the next answer. (The daemon reads the
    // operator's lines in order: once /list is answered, the line before it was taken.)
    op.say("已经找到了，明天送达。");
    op.say("/list");
    op.out.wait(&["#1 bot-tcp/tcp", "unanswered 0", "with op1"]);
    c.types("好的");
    op.out.wait(&["] 好的"]);
    op.say("/c thanks");
    c.out.wait(&[TCP_ANSWER, "已经找到了，明天送达。"]);
    c.out.wait(&["感谢您的耐心"]);
    c.types("bye");
    c.out.wait(&["客户端发起结束"]);
    assert!(c.finished());
    op.out.wait(&["#1 bot-tcp/tcp", "session closed (handler)"]);
}

#[test]
fn the_tutorials_tcp_client_with_nobody_online_is_told_so_and_its_messages_are_kept() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut c = Tutorial::start(P169_CLIENT, d.addr("bot-tcp"));
    c.types("help");
    c.out.wait(&[TCP_ANSWER, "您好，这里是客服"]);
    c.out.wait(&["订单 <编号> / order <id>"]);
    c.types("human");
    c.out.wait(&[TCP_ANSWER, "好的，正在为您转接人工客服"]);
    c.out.wait(&["现在没有客服在线"]);
    c.types("我的快递丢了");
    c.out.wait(&[TCP_ANSWER, "现在没有客服在线"]);
    c.types("price");
    // Still with a person (nobody yet): the bot does not answer.
    c.out.wait(&[TCP_ANSWER, "现在没有客服在线"]);
    c.types("bye");
    c.out.wait(&["客户端发起结束"]);
    assert!(c.finished());
    // The next operator sees what happened.
    let mut op = Attach::new(&d.dir.path().join("ctl.sock"));
    op.out.wait(&["message(s) waiting"]);
    op.out.wait(&[
        "handed to a person by scripted-reply",
        "nobody was attached",
    ]);
    op.out.wait(&["] 我的快递丢了"]);
    op.out.wait(&["] price"]);
}

#[test]
fn the_tutorials_udp_client_stays_in_step_through_a_handoff_to_an_operator() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut op = operator(&d);
    let mut c = Tutorial::start(P171_CUSTOMER, d.addr("bot-udp"));
    c.types("营业时间");
    c.out.wait(&[UDP_ANSWER, "您好，这里是客服"]);
    c.out.wait(&["Opening hours: Monday to Friday"]);
    c.types("转人工");
    c.out.wait(&[UDP_ANSWER, "好的，正在为您转接人工客服"]);
    c.out.wait(&["您排在第 1 位"]);
    op.out.wait(&["#1 bot-udp/udp", "handed to a person"]);
    c.types("能开发票吗？");
    op.out.wait(&["#1 bot-udp/udp", "] 能开发票吗？"]);
    op.say("/take 1");
    op.out.wait(&["you have it now"]);
    op.say("可以，请提供抬头。");
    c.out.wait(&[UDP_ANSWER, "可以，请提供抬头。"]);
    c.types("某某公司");
    op.out.wait(&["] 某某公司"]);
    op.say("好的，已开具。");
    c.out.wait(&[UDP_ANSWER, "好的，已开具。"]);
    // Given back to the bot: it answers again.
    op.say("/release 1");
    op.out.wait(&["released by"]);
    c.types("price");
    c.out.wait(&[UDP_ANSWER, "基础版 99 元/月"]);
    c.types("bye");
    c.out.wait(&["客户端发起结束"]);
    assert!(c.finished());
}

#[test]
fn the_tutorials_udp_client_with_nobody_online_keeps_the_greeting_and_is_told_so() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut c = Tutorial::start(P171_CUSTOMER, d.addr("bot-udp"));
    // The bot does not understand the first message, nor the second, which goes to a
    // person: nobody is attached, and the customer is told so in one answer.
    c.types("我的快递被狗吃了");
    c.out.wait(&[UDP_ANSWER, "您好，这里是客服"]);
    c.out.wait(&["抱歉，我没听懂"]);
    c.types("真的");
    c.out.wait(&[UDP_ANSWER, "现在没有客服在线"]);
    c.types("还在吗");
    c.out.wait(&[UDP_ANSWER, "现在没有客服在线"]);
    c.types("bye");
    c.out.wait(&["客户端发起结束"]);
    assert!(c.finished());
    let ev = d.wait_event("handoff");
    assert_eq!(field(&ev, "by"), "scripted-reply");
    assert_eq!(field(&ev, "operators"), "0");
}

#[test]
fn take_release_and_two_operators_over_the_control_socket() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut op1 = operator(&d);
    let mut op2 = operator(&d);
    let mut c = connect(d.addr("bot-tcp"));
    assert!(ask(&mut c, "help").contains("订单 <编号>"));
    // op1 takes the conversation from the bot and sees what was said.
    op1.say("/take 1");
    op1.out.wait(&["#1 bot-tcp/tcp", "you have it now"]);
    op1.out.wait(&["| customer> help"]);
    op2.out.wait(&["#1 bot-tcp/tcp", "taken by op1"]);
    c.write_all(b"help").unwrap();
    op2.out.wait(&["#1 bot-tcp/tcp", "] help"]);
    op2.say("@1 I can help too");
    op2.out.wait(&["(!) #1 is taken by op1", "not sent"]);
    op1.say("@1 What do you need?");
    assert_eq!(read_reply(&mut c), "What do you need?");
    op2.say("/list");
    op2.out.wait(&["#1 bot-tcp/tcp", "with op1"]);
    op2.say("/release 1");
    op2.out.wait(&["(!) #1 is taken by op1", "/take 1 first"]);
    op1.say("/release 1");
    op2.out.wait(&["released by op1"]);
    assert!(ask(&mut c, "price").starts_with("基础版 99 元"));
    // Sessions that do not exist.
    op1.say("/take 42");
    op1.out.wait(&["(!) no open session #42"]);
    op1.say("/release 42");
    op1.out.wait(&["(!) no open session #42"]);
}

#[test]
fn three_waiting_customers_are_told_their_places_in_the_queue() {
    let mut d =
        support_bot_with(|t| t.replace("wait_timeout = \"20s\"", "wait_timeout = \"300ms\""));
    without_stdin_console(&mut d);
    let mut op = operator(&d);
    let mut customers: Vec<_> = (0..3).map(|_| connect(d.addr("bot-tcp"))).collect();
    for (i, c) in customers.iter_mut().enumerate() {
        let answer = ask(c, "人工");
        assert!(
            answer.contains(&format!("您排在第 {} 位", i + 1)),
            "customer {}: {answer}",
            i + 1
        );
    }
    // Each asks again; nobody answers within wait_timeout: each is told its place.
    for (i, c) in customers.iter_mut().enumerate() {
        let answer = ask(c, "还要等多久？");
        assert!(
            answer.contains(&format!("您排在第 {} 位", i + 1)),
            "{answer}"
        );
    }
    // The first is served: the others move up.
    op.say("/take 1");
    op.out.wait(&["you have it now"]);
    let answer = ask(&mut customers[0], "你好？");
    assert!(answer.starts_with("客服正在处理，请稍候"), "{answer}");
    let answer = ask(&mut customers[2], "现在呢？");
    assert!(answer.contains("您排在第 2 位"), "{answer}");
    drop(customers.remove(1));
    op.out
        .wait(&["#2 bot-tcp/tcp", "session closed (peer_closed)"]);
    let answer = ask(&mut customers[1], "现在呢？");
    assert!(answer.contains("您排在第 1 位"), "{answer}");
}

#[test]
fn canned_replies_are_listed_and_sent_and_an_unknown_name_is_refused() {
    let mut d = support_bot_with(|t| t);
    without_stdin_console(&mut d);
    let mut op = operator(&d);
    let mut c = connect(d.addr("bot-tcp"));
    assert!(ask(&mut c, "人工").contains("正在为您转接"));
    c.write_all("什么时候上班？".as_bytes()).unwrap();
    op.out.wait(&["] 什么时候上班？"]);
    op.say("/c");
    op.out.wait(&["/c hours", "营业时间"]);
    op.out.wait(&["/c refund"]);
    op.say("/c holidays");
    op.out
        .wait(&["(!) no canned reply named \"holidays\"; /c lists them"]);
    op.say("/c hours");
    assert_eq!(
        read_reply(&mut c),
        "营业时间：周一至周五 9:00–18:00。 We are open Monday to Friday, 9:00–18:00."
    );
}

/// One read, as the tutorial's clients do.
fn read_reply(c: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = [0; 1024];
    let n = c.read(&mut buf).expect("a reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
