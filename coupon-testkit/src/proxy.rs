//! A TCP proxy that injects network faults between a client and a real service: it
//! passes bytes, swallows or delays the service's answers, or cuts the connection right
//! after the service answered (so the request took effect and the client never hears
//! it).

use std::sync::{Arc, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Forward requests, drop every answer; connections stay open (a stalled network).
    SwallowAnswers,
    /// Forward requests; when an answer arrives, drop it and close that connection (the
    /// service acted, the client sees a dropped connection).
    CutAfterAnswer,
    /// Forward both ways, each answer this long after it arrived (a slow network: the
    /// client may time out although the service acted).
    DelayAnswers(std::time::Duration),
    /// Drop requests and answers alike; connections stay open (a partition: the service
    /// never hears what was sent meanwhile, and the client hears nothing).
    Blackhole,
}

/// A proxy on a loopback port of its own, forwarding to `upstream`; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    upstream: Arc<RwLock<String>>,
    mode: Arc<watch::Sender<ProxyMode>>,
    accepting: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, passing traffic.
    pub async fn start(upstream: impl Into<String>) -> Self {
        Self::start_on(0, upstream).await
    }

    /// Starts a proxy in front of the server a `scheme://user@host:port/...` URL
    /// (a database's) names, and answers the URL that reaches it through the proxy.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let upstream = url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port after the @ in the URL")
            .to_owned();
        let proxy = Self::start(upstream.clone()).await;
        let through = url.replacen(&upstream, &proxy.address(), 1);
        (proxy, through)
    }

    /// Starts a proxy on `port` (0: any free one), passing traffic.
    pub async fn start_on(port: u16, upstream: impl Into<String>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy's port");
        let port = listener.local_addr().expect("a local address").port();
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let mode = Arc::new(mode);
        let upstream = Arc::new(RwLock::new(upstream.into()));
        let accepting = tokio::spawn({
            let (mode, upstream) = (mode.clone(), upstream.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let address = upstream.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let Ok(server) = TcpStream::connect(&address).await else {
                        continue; // the client sees its connection closed
                    };
                    tokio::spawn(relay(client, server, mode.subscribe()));
                }
            }
        });
        Self {
            port,
            upstream,
            mode,
            accepting,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Forwards new connections to `upstream` (for a service that must know the proxy's
    /// port before it starts).
    pub fn set_upstream(&self, upstream: impl Into<String>) {
        *self.upstream.write().unwrap_or_else(|e| e.into_inner()) = upstream.into();
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

fn current(mode: &watch::Receiver<ProxyMode>) -> ProxyMode {
    *mode.borrow()
}

/// Pumps one connection until either side closes or an answer is cut.
async fn relay(client: TcpStream, server: TcpStream, mode: watch::Receiver<ProxyMode>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) if current(&mode) == ProxyMode::Blackhole => {}
                Ok(n) => {
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let answers = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => match current(&mode) {
                    ProxyMode::Pass => {
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                    ProxyMode::SwallowAnswers | ProxyMode::Blackhole => {}
                    ProxyMode::CutAfterAnswer => return,
                    ProxyMode::DelayAnswers(delay) => {
                        tokio::time::sleep(delay).await;
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                },
            }
        }
    };
    // Whichever side ends first ends the connection: dropping the halves closes both.
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}
