//! `switchboard send` and `switchboard chat` against the tutorial's own servers: its Python
//! programs (plain `socket`, `recv(1024)`, UTF-8, no newline at the end of a message), with
//! `input()` replaced by an automatic answer and the port 8888 by port 0 printed on stdout.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

/// How long a test waits for a process before failing: a guard against a hang, never a way
/// to let something happen.
const GUARD: Duration = Duration::from_secs(20);

/// A Python server from the tutorial, run with `python3 -c`. Its first line on stdout is its
/// port; the lines after are what it reports (what it received). Killed when dropped.
struct PyServer {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl PyServer {
    fn start(script: &str) -> Self {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = PyServer {
            child,
            lines,
            port: 0,
        };
        let first = server.line();
        server.port = first
            .parse()
            .unwrap_or_else(|_| panic!("the server's first line is its port, not {first:?}"));
        server
    }

    /// `127.0.0.1:PORT`.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The next line the server printed.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(GUARD)
            .expect("the server printed a line")
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished `switchboard` run left behind.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `switchboard ARGS` with `stdin` piped in (then closed) and wait for it to exit.
fn switchboard(args: &[&str], stdin: &str) -> Run {
    let output = crate::util::run_in(args, None, stdin);
    Run {
        code: output.status.code(),
        stdout: crate::util::stdout(&output),
        stderr: crate::util::stderr(&output),
    }
}

/// The run failed with the one-line refusal for `127.0.0.1:PORT/PROTO`.
fn assert_refused(run: &Run, port: u16, proto: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "switchboard: error: connection refused: nothing listens on 127.0.0.1:{port}/{proto}\n"
        )
    );
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn free_port(udp: bool) -> u16 {
    if udp {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }
}

/// The one-shot TCP server (p166), answering what it received and closing.
const TCP_REPLY_SERVER: &str = r#"
from socket import socket,AF_INET,SOCK_STREAM
server_socket=socket(AF_INET,SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
data=client_socket.recv(1024)
print('received:',repr(data.decode('UTF-8')))
client_socket.send(('收到: '+data.decode('UTF-8')).encode('UTF-8'))
client_socket.close()
server_socket.close()
"#;

/// The one-shot TCP server (p166) as in the tutorial: it receives and closes, no reply.
const TCP_SILENT_SERVER: &str = r#"
from socket import socket,AF_INET,SOCK_STREAM
server_socket=socket(AF_INET,SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
data=client_socket.recv(1024)
print('received:',repr(data.decode('UTF-8')))
server_socket.close()
"#;

#[test]
fn send_tcp_prints_the_reply() {
    let server = PyServer::start(TCP_REPLY_SERVER);
    let run = switchboard(&["send", &server.addr(), "welcome to Python world"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "收到: welcome to Python world");
    assert_eq!(server.line(), "received: 'welcome to Python world'");
}

#[test]
fn send_tcp_reply_in_several_segments_is_printed_whole() {
    let server = PyServer::start(
        r#"
import socket,time
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
data=client_socket.recv(1024)
client_socket.send('part one, '.encode('UTF-8'))
time.sleep(0.1)
client_socket.send('part two'.encode('UTF-8'))
client_socket.close()
"#,
    );
    // The gap between the segments is shorter than --idle; the close ends the reply.
    let run = switchboard(&["send", "--idle", "10s", &server.addr(), "hi"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "part one, part two");
}

#[test]
fn send_tcp_reply_ends_when_the_server_goes_quiet() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
data=client_socket.recv(1024)
client_socket.send(data)
data=client_socket.recv(1024)
print('then the client closed:',repr(data.decode('UTF-8')))
"#,
    );
    // The server keeps the connection open until the client closes it: only the quiet
    // period after the reply can end the wait.
    let run = switchboard(&["send", "--timeout", "10s", &server.addr(), "echo me"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "echo me");
    assert_eq!(server.line(), "then the client closed: ''");
}

#[test]
fn send_no_reply_sends_and_closes_like_the_one_shot_client() {
    let server = PyServer::start(TCP_SILENT_SERVER);
    let run = switchboard(
        &[
            "send",
            "--no-reply",
            &server.addr(),
            "welcome to Python world",
        ],
        "",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(server.line(), "received: 'welcome to Python world'");
}

#[test]
fn send_adds_a_newline_only_when_asked() {
    let server = PyServer::start(TCP_REPLY_SERVER);
    let run = switchboard(&["send", "--newline", &server.addr(), "hi"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(server.line(), r"received: 'hi\n'");
}

#[test]
fn send_dash_reads_the_whole_message_from_stdin() {
    let server = PyServer::start(TCP_REPLY_SERVER);
    let run = switchboard(&["send", &server.addr(), "-"], "第一行\nsecond line");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(server.line(), r"received: '第一行\nsecond line'");
    assert_eq!(run.stdout, "收到: 第一行\nsecond line");
}

#[test]
fn send_reports_a_server_that_closes_without_replying() {
    let server = PyServer::start(TCP_SILENT_SERVER);
    let run = switchboard(&["send", &server.addr(), "anyone?"], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "no reply: {}/tcp closed the connection",
            server.addr()
        )),
        "{run:?}"
    );
}

#[test]
fn send_times_out_when_no_reply_comes() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
print('received:',repr(client_socket.recv(1024).decode('UTF-8')))
client_socket.recv(1024)
"#,
    );
    let run = switchboard(
        &["send", "--timeout", "300ms", &server.addr(), "hello?"],
        "",
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr, "switchboard: error: no reply within 300ms\n");
    assert_eq!(server.line(), "received: 'hello?'");
}

#[test]
fn send_refused_names_what_does_not_listen() {
    let port = free_port(false);
    let run = switchboard(&["send", &format!("127.0.0.1:{port}"), "hi"], "");
    assert_refused(&run, port, "tcp");
}

#[test]
fn send_reports_a_name_that_does_not_resolve() {
    // .invalid never resolves (RFC 6761).
    let run = switchboard(&["send", "nosuch.invalid:8888", "hi"], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("switchboard: error: cannot resolve nosuch.invalid: "),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

/// The UDP receiver (p170), answering what it received.
const UDP_REPLY_SERVER: &str = r#"
import socket
recv_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
recv_socket.bind(('127.0.0.1',0))
print(recv_socket.getsockname()[1])
recv_data,addr=recv_socket.recvfrom(1024)
print('接收到的数据为:',recv_data.decode('UTF-8'))
data='收到了'
recv_socket.sendto(data.encode('UTF-8'),addr)
recv_socket.close()
"#;

#[test]
fn send_udp_prints_the_reply_datagram() {
    let server = PyServer::start(UDP_REPLY_SERVER);
    let run = switchboard(&["send", "--udp", &server.addr(), "你好"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "收到了");
    assert_eq!(server.line(), "接收到的数据为: 你好");
}

#[test]
fn send_udp_no_reply_just_sends() {
    let server = PyServer::start(UDP_REPLY_SERVER);
    let run = switchboard(&["send", "-u", "--no-reply", &server.addr(), "你好"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(server.line(), "接收到的数据为: 你好");
}

#[test]
fn send_udp_times_out_when_no_datagram_comes_back() {
    let server = PyServer::start(
        r#"
import socket
recv_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
recv_socket.bind(('127.0.0.1',0))
print(recv_socket.getsockname()[1])
recv_data,addr=recv_socket.recvfrom(1024)
print('接收到的数据为:',recv_data.decode('UTF-8'))
recv_socket.recvfrom(1024)
"#,
    );
    let run = switchboard(&["send", "--udp", "-w", "300ms", &server.addr(), "hi"], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr, "switchboard: error: no reply within 300ms\n");
    assert_eq!(server.line(), "接收到的数据为: hi");
}

#[test]
fn send_udp_refused_names_what_does_not_listen() {
    let port = free_port(true);
    let run = switchboard(&["send", "--udp", &format!("127.0.0.1:{port}"), "hi"], "");
    assert_refused(&run, port, "udp");
}

/// The multi-turn TCP server (p168), answering `got ...` after a moment's thought where the
/// tutorial asks `input()`, until the client says bye (or goes away, where the tutorial's loop
/// would spin). A client that did not wait for each answer would have its next lines merged
/// into one recv(1024).
const TCP_CHAT_SERVER: &str = r#"
import socket,time
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,cliet_addr=server_socket.accept()
info=client_socket.recv(1024).decode('UTF-8')
while info!='bye':
    if not info:
        print('the client closed')
        break
    print('received:',repr(info))
    time.sleep(0.2)
    data='got '+info
    client_socket.send(data.encode('UTF-8'))
    info=client_socket.recv(1024).decode('UTF-8')
if info=='bye':
    print('the client said bye')
client_socket.close()
server_socket.close()
"#;

#[test]
fn chat_tcp_takes_turns_until_bye() {
    let server = PyServer::start(TCP_CHAT_SERVER);
    let run = switchboard(&["chat", &server.addr()], "hello\nworld\nbye\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< got hello\n< got world\n");
    assert_eq!(run.stderr, "");
    // Each line arrived as a recv(1024) of its own, without its newline.
    assert_eq!(server.line(), "received: 'hello'");
    assert_eq!(server.line(), "received: 'world'");
    assert_eq!(server.line(), "the client said bye");
}

#[test]
fn chat_bye_word_can_be_changed() {
    let server = PyServer::start(&TCP_CHAT_SERVER.replace("'bye'", "'再见'"));
    let run = switchboard(
        &["chat", "--bye", "再见", &server.addr()],
        "hello\nbye\n再见\n",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    // "bye" is an ordinary message now, from either side.
    assert_eq!(run.stdout, "< got hello\n< got bye\n");
    assert_eq!(server.line(), "received: 'hello'");
    assert_eq!(server.line(), "received: 'bye'");
    assert_eq!(server.line(), "the client said bye");
}

#[test]
fn chat_appends_a_newline_only_when_asked() {
    let server = PyServer::start(TCP_CHAT_SERVER);
    let run = switchboard(&["chat", "--newline", &server.addr()], "hello\r\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< got hello\n");
    assert_eq!(server.line(), r"received: 'hello\n'");
}

#[test]
fn chat_end_of_input_half_closes_and_waits_for_the_last_reply() {
    let server = PyServer::start(
        r#"
import socket,time
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
info=client_socket.recv(1024).decode('UTF-8')
time.sleep(0.5)
client_socket.send(('got '+info).encode('UTF-8'))
print('then:',repr(client_socket.recv(1024).decode('UTF-8')))
client_socket.close()
"#,
    );
    // No bye: stdin just ends after one line, and the reply comes late.
    let run = switchboard(&["chat", &server.addr()], "hello\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< got hello\n");
    assert_eq!(run.stderr, "", "closing after our end of input is expected");
    assert_eq!(server.line(), "then: ''");
}

#[test]
fn chat_tcp_server_saying_bye_ends_it() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
print('received:',repr(client_socket.recv(1024).decode('UTF-8')))
client_socket.send('bye'.encode('UTF-8'))
print('then:',repr(client_socket.recv(1024).decode('UTF-8')))
client_socket.close()
"#,
    );
    let run = switchboard(&["chat", &server.addr()], "hello\nstill there?\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< bye\n");
    assert_eq!(run.stderr, "server said bye\n");
    assert_eq!(server.line(), "received: 'hello'");
    assert_eq!(
        server.line(),
        "then: ''",
        "nothing is sent after the server's bye"
    );
}

#[test]
fn chat_tcp_server_closing_mid_chat_is_reported() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
info=client_socket.recv(1024).decode('UTF-8')
client_socket.send(('got '+info).encode('UTF-8'))
print('received:',repr(client_socket.recv(1024).decode('UTF-8')))
client_socket.close()
server_socket.close()
"#,
    );
    let run = switchboard(&["chat", &server.addr()], "hello\nworld\nanyone?\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< got hello\n");
    assert_eq!(run.stderr, "connection closed by server\n");
    assert_eq!(server.line(), "received: 'world'");
}

#[test]
fn chat_escapes_what_the_server_sends() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
client_socket.recv(1024)
client_socket.send(b'\x1b[2J\x1b[31mred\nserver said bye\x07\xff')
client_socket.recv(1024)
client_socket.close()
"#,
    );
    let run = switchboard(&["chat", &server.addr()], "hello\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "< \\u{1b}[2J\\u{1b}[31mred\n  server said bye\\u{7}\\xff\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn chat_refused_names_what_does_not_listen() {
    let port = free_port(false);
    let run = switchboard(&["chat", &format!("127.0.0.1:{port}")], "hello\n");
    assert_refused(&run, port, "tcp");
}

/// The customer-service server (客服, p171), answering where the tutorial asks `input()`.
const UDP_SERVICE_SERVER: &str = r#"
import socket
recv_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
recv_socket.bind(('127.0.0.1',0))
print(recv_socket.getsockname()[1])
while True:
    recv_data,addr=recv_socket.recvfrom(1024)
    recv_string=recv_data.decode('UTF-8')
    print('客户说:',recv_string)
    if recv_string=='bye':
        print('服务器端即将退出')
        break
    data='客服: 收到「'+recv_string+'」'
    recv_socket.sendto(data.encode('UTF-8'),addr)
recv_socket.close()
"#;

#[test]
fn chat_udp_customer_service_until_bye() {
    let server = PyServer::start(UDP_SERVICE_SERVER);
    let run = switchboard(
        &["chat", "--udp", &server.addr()],
        "你好\n我的订单到哪了\nbye\n",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "< 客服: 收到「你好」\n< 客服: 收到「我的订单到哪了」\n"
    );
    assert_eq!(server.line(), "客户说: 你好");
    assert_eq!(server.line(), "客户说: 我的订单到哪了");
    assert_eq!(server.line(), "客户说: bye");
    assert_eq!(server.line(), "服务器端即将退出");
}

#[test]
fn chat_udp_refused_is_reported() {
    let port = free_port(true);
    let run = switchboard(
        &["chat", "--udp", &format!("127.0.0.1:{port}")],
        "hello\nworld\n",
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "switchboard: error: connection refused: nothing listens on 127.0.0.1:{port}/udp\n"
        )
    );
}

#[test]
fn chat_shows_a_reply_with_newlines_as_lines() {
    let server = PyServer::start(
        r#"
import socket
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
server_socket.bind(('127.0.0.1',0))
server_socket.listen(5)
print(server_socket.getsockname()[1])
client_socket,client_addr=server_socket.accept()
client_socket.recv(1024)
client_socket.send('菜单 menu:\r\n  价格 price\n  bye\n'.encode('UTF-8'))
client_socket.recv(1024)
client_socket.close()
"#,
    );
    let run = switchboard(&["chat", &server.addr()], "help\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "< 菜单 menu:\n    价格 price\n    bye\n");
}
