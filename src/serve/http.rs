//! The HTTP/1.1 server loop that `brief serve` and `brief preview` share, on hyper:
//! the caller passes the listener, a shutdown future and a handler (mini-redis's
//! `run(listener, shutdown)`), and builds every answer with [`response`].
//!
//! A connection slot is taken *before* `accept`, so connections over the cap wait in
//! the kernel's backlog instead of being accepted and dropped. One client address may
//! hold only a share of the slots ([`Limits::per_client`]), so one client opening slow
//! connections cannot lock everyone else out; loopback is exempt, because behind the
//! reverse proxy every request comes from loopback.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub type Body = Full<Bytes>;

/// How much one server lets its clients take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold at once; more are closed.
    pub per_client: usize,
    /// Time a client has to send a request head (request line and headers), also
    /// while a kept-alive connection is idle.
    pub head_timeout: Duration,
    /// Largest request head buffered.
    pub max_head: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

/// Serves connections from `listener` with `handler` until `shutdown` completes, then
/// lets requests in flight finish (at most [`Limits::drain_timeout`]).
pub async fn run<H, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
    handler: H,
) -> Result<()>
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(ClientSlots::new(limits.per_client));
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = async {
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (slot, accept(&listener).await)
        };
        let (slot, (stream, peer)) = tokio::select! {
            () = &mut shutdown => break,
            next = next => next,
        };
        while connections.try_join_next().is_some() {}
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Some(client) = clients.enter(peer.ip()) else {
            continue; // over its share: dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let handler = handler.clone();
        let mut stop_rx = stop_rx.clone();
        connections.spawn(async move {
            let _held = (slot, client);
            let service = service_fn(move |req| {
                let answer = handler(peer, req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { let _ = stop_rx.wait_for(|stop| *stop).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    while connections.try_join_next().is_some() {}
    if !connections.is_empty() {
        eprintln!("finishing {} open connection(s)", connections.len());
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "some requests did not finish within {:?}; closing them",
            limits.drain_timeout
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The next connection. Accept errors (out of file descriptors and the like) are
/// retried after a pause that doubles up to a second, instead of spinning.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    let mut pause = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(err) => {
                tracing::warn!("accept failed: {err}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// An answer with a body, its content type, and `Cache-Control: no-store` (both
/// servers answer about one reader or one draft; callers that may be cached replace it).
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The block one client is counted in: its IPv4 address, or its IPv6 /64 (what one
/// subscriber line usually gets).
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Open connections per client group.
struct ClientSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its client; uncounted when dropped.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    group: Option<IpAddr>,
}

impl ClientSlots {
    fn new(max: usize) -> ClientSlots {
        ClientSlots {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `ip`; `None` when the client already holds its share.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        if ip.is_loopback() {
            return Some(ClientSlot {
                slots: self.clone(),
                group: None,
            });
        }
        let group = client_group(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(group).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            slots: self.clone(),
            group: Some(group),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(group) = self.group else { return };
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&group) {
            *count -= 1;
            if *count == 0 {
                open.remove(&group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_loopback_is_exempt() {
        let slots = Arc::new(ClientSlots::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| slots.enter(a).unwrap()).collect();
        assert!(slots.enter(a).is_none());
        assert!(slots.enter("192.0.2.9".parse().unwrap()).is_some());
        // The same /64, another address: the same client.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _b = (
            slots.enter(v6("2001:db8::1")),
            slots.enter(v6("2001:db8::2")),
        );
        assert!(slots.enter(v6("2001:db8::3")).is_none());
        assert!((0..10).all(|_| slots.enter("127.0.0.1".parse().unwrap()).is_some()));
        drop(held);
        assert!(slots.enter(a).is_some());
        assert!(slots.open.lock().unwrap().get(&a).is_none());
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_client() {
        assert_eq!(
            client_group("::ffff:198.51.100.7".parse().unwrap()),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
