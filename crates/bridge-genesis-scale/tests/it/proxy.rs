//! A TCP proxy in front of a service that can hold back the service's replies, as a slow or
//! congested network would: what the client sends still arrives, what the server answers is
//! delivered only when released (all of it, in order).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often a held reply checks whether it may go.
const HOLD_POLL: Duration = Duration::from_millis(2);

pub(crate) struct Proxy {
    /// `127.0.0.1:<port>`: connect here instead of to the service.
    pub(crate) addr: String,
    hold: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards every connection made to [`Proxy::addr`] to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("nats://").to_owned();
        let held = hold.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, None));
                tokio::spawn(pipe(server_read, client_write, Some(held.clone())));
            }
        });
        Self { addr, hold, accept }
    }

    /// From now on the server's replies wait.
    pub(crate) fn hold_replies(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Delivers the held replies and lets the next ones through.
    pub(crate) fn release_replies(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hold: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
            tokio::time::sleep(HOLD_POLL).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
