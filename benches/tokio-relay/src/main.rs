//! TCP relay on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM with tokio's single-threaded runtime and
//! `copy_bidirectional`: what a Rust user would write. `tokio-relay PORT UPSTREAM`.
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect("PORT");
    let upstream: u16 = args.next().and_then(|p| p.parse().ok()).expect("UPSTREAM");
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let _ = client.set_nodelay(true);
        tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                let _ = server.set_nodelay(true);
                let _ = copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
