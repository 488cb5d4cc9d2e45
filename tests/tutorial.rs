//! The tutorial's servers as printed in it (p166, p168, p170, p171), against `switchboard send`
//! and `switchboard chat`. Two things differ from the printed programs, both about the port:
//! each binds port 0 instead of 8888 (tests never use a fixed port) and prints the port it got.
//! Their `input()` reads what the test pipes into their stdin, as a person would type it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::util::{run_in, stderr, stdout};

const GUARD: Duration = Duration::from_secs(20);

/// A tutorial server run with `python3 -c`, its stdin fed with `answers` (what the person at
/// the server types), its stdout read line by line. Killed when dropped.
struct Tutorial {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl Tutorial {
    /// Start `program` with the line `port=8888` (or `('127.0.0.1',8888)`) made port 0 and the
    /// bound port printed once it listens.
    fn start(program: &str, socket: &str, answers: &str) -> Tutorial {
        let program = program
            .replace("port=8888", "port=0")
            .replace("('127.0.0.1',8888)", "('127.0.0.1',0)");
        // Printed once the server takes connections: after `listen` for TCP (a client told the
        // port between `bind` and `listen` would be refused), after `bind` for UDP.
        let bind = format!("{socket}.bind(");
        let listen = format!("{socket}.listen(");
        let at = program
            .find(&listen)
            .or_else(|| program.find(&bind))
            .expect("the program binds");
        let end = at + program[at..].find('\n').expect("a line end");
        let program = format!(
            "{}\nprint({socket}.getsockname()[1], flush=True){}",
            &program[..end],
            &program[end..]
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(&program)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(answers.as_bytes()).unwrap();
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(GUARD).expect("the port");
        let port = first.trim().parse().expect("the first line is the port");
        Tutorial { child, lines, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the server printed, once it has exited.
    fn finish(mut self) -> String {
        let status = wait_timeout::ChildExt::wait_timeout(&mut self.child, GUARD)
            .expect("wait")
            .expect("the tutorial's server exits by itself");
        assert!(status.success(), "the server failed: {status}");
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Tutorial {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// p166, as printed.
const P166: &str = r#"from socket import socket,AF_INET,SOCK_STREAM
# AF_INET用于internet之间的进程通信
# SOCK_STREAM表示TCP协议
# 1、创建socket模块
server_socket=socket(AF_INET,SOCK_STREAM)
# print(type(server_socket)) # <class 'socket.socket'>
# 2、绑定ip地址和端口
ip='127.0.0.1' # 表示连接本机
port=8888 # 不要和已有的指定端口冲突,比如sql服务的port是3306
server_socket.bind((ip,port)) # bind参数是一个元组
# 3、使用listen()开始监听
server_socket.listen(5)
print('服务器已启动(客户端连接成功后,服务器的代码才会向下执行)')
# 4、等待客户端的连接
client_socket,client_addr=server_socket.accept() # accept方法返回一个元组类型,通过系列解包赋值分别赋值给左边
print(type(client_socket))
print(type(client_addr))
# 5、接收来自客户端的数据
data=client_socket.recv(1024) # 返回值是一个字符串类型,最大值为1024
print('客户端发送过来的数据为:',data.decode('UTF-8'))
# 6、关闭socket
server_socket.close()
"#;

/// p168, as printed.
const P168: &str = r#"import socket # 这么写的话就要写socket模块名 from...import不需要写模块名
# 1、创建socket对象
server_socket=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
# 2、绑定主机ip和port
server_socket.bind(('127.0.0.1',8888))
# 3、开始监听 最大监听数量设置为5
server_socket.listen(5)
# 4、开始等待客户端的tcp连接
client_socket,cliet_addr=server_socket.accept()
# 5、接收数据
info=client_socket.recv(1024).decode('UTF-8') # 服务器端接收数据时要从client端socket去接
while info!='bye':
    if info:
        print('接收到的数据为:',info)
    # 准备回复的数据
    data=input('请输入要回复的数据:')
    client_socket.send(data.encode('UTF-8')) # 发数据也是从client端去发
    if data=='bye':
        break
    info = client_socket.recv(1024).decode('UTF-8')
# 关闭两个socket对象
client_socket.close()
server_socket.close()
"#;

/// p170's receiver, as printed.
const P170: &str = r#"# udp接收方的代码
import socket
# 1、创建socket对象
recv_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
# 2、绑定ip地址和端口
recv_socket.bind(('127.0.0.1',8888))
# 3、接收来自发送方的数据
recv_data,addr=recv_socket.recvfrom(1024) # 注意返回对象是一个元组,系列解包赋值
print('-'*66)
print('接收到的数据为:',recv_data.decode('UTF-8'))
print('接收数据来自:',addr) # 接收数据来自: ('127.0.0.1', 59661)
print('-'*66)
# 4、准备回复对方的数据
data=input('请输入要回复的数据:')
# 5、回复
recv_socket.sendto(data.encode('UTF-8'),addr)
# 6、关闭
recv_socket.close()
"#;

/// p171's customer service (客服), as printed.
const P171: &str = r#"# 客服人员
import socket
recv_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
recv_socket.bind(('127.0.0.1',8888)) # 注意入参是一个元组
while True:
    recv_data,addr=recv_socket.recvfrom(1024) #返回值是一个元组类型,系列解包赋值
    recv_string=recv_data.decode('UTF-8')
    print('客户说:',recv_string)
    print('客户地址:',addr)
    if recv_string=='bye':
        print('服务器端即将推出')
        break
    # 服务器端回复客户端数据
    data=input('回复什么给客户端:')
    recv_socket.sendto(data.encode('UTF-8'),addr) # 注意udp发送数据接口为sendto,参数2为addr
recv_socket.close()
"#;

#[test]
fn p166_server_and_switchboard_as_the_p167_client() {
    let server = Tutorial::start(P166, "server_socket", "");
    let o = run_in(
        &[
            "send",
            "--no-reply",
            &server.addr(),
            "welcome to Python world",
        ],
        None,
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = server.finish();
    assert!(
        printed.contains("客户端发送过来的数据为: welcome to Python world"),
        "{printed}"
    );
}

#[test]
fn p168_server_and_switchboard_chat_as_the_p169_client() {
    // The person at the server answers twice; the customer says bye on the third turn.
    let server = Tutorial::start(P168, "server_socket", "你好\n再见前的回答\n");
    let o = run_in(&["chat", &server.addr()], None, "在吗\n问个问题\nbye\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let chat = stdout(&o);
    assert!(
        chat.contains("你好") && chat.contains("再见前的回答"),
        "{chat}"
    );
    let printed = server.finish();
    assert!(printed.contains("接收到的数据为: 在吗"), "{printed}");
    assert!(printed.contains("接收到的数据为: 问个问题"), "{printed}");
}

#[test]
fn p170_receiver_and_switchboard_as_the_p170_sender() {
    let server = Tutorial::start(P170, "recv_socket", "收到了\n");
    let o = run_in(&["send", "--udp", &server.addr(), "你好"], None, "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "收到了");
    let printed = server.finish();
    assert!(printed.contains("接收到的数据为: 你好"), "{printed}");
}

#[test]
fn p171_customer_service_and_switchboard_chat_as_the_customer() {
    let server = Tutorial::start(P171, "recv_socket", "您好，请讲\n已为您登记\n");
    let o = run_in(
        &["chat", "--udp", &server.addr()],
        None,
        "我想咨询\n订单 42\nbye\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let chat = stdout(&o);
    assert!(
        chat.contains("您好，请讲") && chat.contains("已为您登记"),
        "{chat}"
    );
    let printed = server.finish();
    assert!(printed.contains("客户说: 订单 42"), "{printed}");
    assert!(printed.contains("服务器端即将推出"), "{printed}");
}

/// The tutorial's multi-turn TCP client (p169), as printed; `tests/desk.rs` runs it against
/// the support-bot example, its port changed.
pub(crate) const P169_CLIENT: &str = r#"import socket
# 1、创建socket对象
client_socket=socket.socket() # 客户端这边不需要加参数:AF_INET,SOCK_STREAM这些参数,只有服务器端要加
# 2、连接主机的ip和port
ip='127.0.0.1'
port=8888
client_socket.connect((ip,port)) # 注意参数是个元组
print('与服务器端建立连接')
# 3、客户端先发送数据
info=''
while info!='bye':
    send_data=input('请输入客户端要发送的数据:')
    client_socket.send(send_data.encode('UTF-8'))
    if send_data=='bye':
        print('客户端发起结束')
        break
    info=client_socket.recv(1024).decode('UTF-8')
    print('收到服务器的响应数据:',info)
client_socket.close()
"#;

/// The tutorial's UDP customer (客户, p171), as printed; `tests/desk.rs` runs it against the
/// support-bot example, its port changed.
pub(crate) const P171_CUSTOMER: &str = r#"# 客户咨询者
import socket
send_socket=socket.socket(socket.AF_INET,socket.SOCK_DGRAM) # udp协议收发数据都要加参数 tcp协议收发数据只有服务器端代码要加参数
while True:
    data=input('客户说:')
    send_socket.sendto(data.encode('UTF-8'),('127.0.0.1',8888))
    if data=='bye':
        print('客户端发起结束')
        break
    recv_data,addr=send_socket.recvfrom(1024)
    print('客户端接收数据:',recv_data.decode('UTF-8'))
    print('服务器端地址:',addr)
send_socket.close()
"#;
