//! A TCP proxy in front of a database that a test can break in two ways: `cut`
//! closes every connection through it and refuses new ones until `restore`, as
//! if the database had gone down; `strand` stops forwarding anything the
//! database sends on the connections open now, for good, while their requests
//! still reach it and new connections work, as if the network had lost the
//! way back (a failover, a half-dead link): a query on a stranded connection
//! runs but is never answered.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub address: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    /// Bumped by `strand`: connections opened before the bump are stranded.
    strands: Arc<watch::Sender<u64>>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a port of its own and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(watch::Sender::new(true));
        let strands = Arc::new(watch::Sender::new(0u64));
        let accepting = tokio::spawn({
            let (up, strands) = (up.clone(), strands.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !*up.borrow() {
                        continue;
                    }
                    let mut cut = up.subscribe();
                    let stranded = strands.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut from_client, to_client) = client.into_split();
                        let (from_server, mut to_server) = server.into_split();
                        tokio::select! {
                            _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                            _ = answers(from_server, to_client, stranded) => {}
                            _ = cut.wait_for(|up| !*up) => {}
                        }
                    });
                }
            }
        });
        Proxy {
            address,
            up,
            strands,
            accepting,
        }
    }

    /// Closes every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// From now on, nothing the database sends on the connections open now
    /// reaches their clients.
    pub fn strand(&self) {
        self.strands.send_modify(|strands| *strands += 1);
    }
}

/// Forwards what the database sends until the connection is stranded; then
/// holds it, and what follows, for good.
async fn answers(
    mut from_server: tokio::net::tcp::OwnedReadHalf,
    mut to_client: tokio::net::tcp::OwnedWriteHalf,
    mut stranded: watch::Receiver<u64>,
) {
    let born = *stranded.borrow_and_update();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = from_server.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if *stranded.borrow() == born => {
                    if to_client.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => break,
            },
            _ = stranded.changed() => break,
        }
    }
    // Stranded: both halves stay open (they live as long as this future) and
    // nothing more is forwarded.
    std::future::pending::<()>().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}
