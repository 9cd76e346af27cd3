//! Stream clients for the benchmarks: many WebSocket or SSE connections,
//! each recording when each notification arrived. Parsing is minimal (the
//! seq and, for the latency scenario, a number in the title) so that the
//! client stays cheap next to the server it measures.

use anyhow::{Context as _, bail};
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

/// Which stream endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Ws,
    Sse,
}

/// A notification received by a client.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    pub seq: i64,
    /// The number after `#` in the title, if any (used to match sends).
    pub tag: Option<u64>,
    pub at: Instant,
}

/// Counters shared by all clients of a run.
#[derive(Default)]
pub struct Shared {
    pub notifications: AtomicU64,
    pub ready: AtomicU64,
    pub failed: AtomicU64,
    /// Streams are opened with `counts=derived` (as the widget does): no
    /// counts event after a new entry.
    pub derived: bool,
}

/// How streams send counts: after every change, or not after new entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CountsMode {
    Each,
    Derived,
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Reads the seq and the title tag of a notification message.
fn parse_notification(text: &str) -> Option<(i64, Option<u64>)> {
    let seq = number_after(text, "\"seq\":")? as i64;
    Some((seq, number_after(text, "#")))
}

/// The local address for the n-th connection: spread over 127.0.0.0/8 so
/// that ten thousands of connections never run out of ephemeral ports.
fn local_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (n / 20_000) as u8, 1))
}

async fn tcp(server: SocketAddr, n: usize) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if server.ip().is_loopback() {
        // A previous run's connections linger in TIME_WAIT on these local
        // ports; without SO_REUSEADDR binding hunts for free ports for ages.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(local_ip(n), 0))?;
    }
    socket.set_recv_buffer_size(16 * 1024)?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens one stream for `token` and reports each notification on `out`.
/// Returns once the connection is established (it then runs in a task).
pub async fn open(
    transport: Transport,
    base: &str,
    token: &str,
    n: usize,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Receipt>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let server: SocketAddr = authority
        .parse()
        .context("the server URL must be http://IP:port")?;
    let stream = tcp(server, n).await?;
    match transport {
        Transport::Ws => {
            let counts = if shared.derived {
                "&counts=derived"
            } else {
                ""
            };
            let url = format!("ws://{authority}/v1/me/ws?token={token}{counts}");
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(8 * 1024)
                .write_buffer_size(0);
            let (mut ws, _) =
                tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                    .await
                    .context("WebSocket handshake")?;
            Ok(tokio::spawn(async move {
                let mut ready = false;
                while let Some(msg) = ws.next().await {
                    let Ok(tokio_tungstenite::tungstenite::Message::Text(text)) = msg else {
                        if msg.is_err() {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        if matches!(msg, Ok(tokio_tungstenite::tungstenite::Message::Close(_))) {
                            break;
                        }
                        continue;
                    };
                    let at = Instant::now();
                    if text.starts_with(r#"{"type":"notification""#) {
                        if let Some((seq, tag)) = parse_notification(&text) {
                            shared.notifications.fetch_add(1, Ordering::Relaxed);
                            let _ = out.send(Receipt { seq, tag, at });
                        }
                    } else if !ready && text.starts_with(r#"{"type":"counts""#) {
                        ready = true;
                        shared.ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }))
        }
        Transport::Sse => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            let counts = if shared.derived {
                "?counts=derived"
            } else {
                ""
            };
            stream
                .write_all(
                    format!(
                        "GET /v1/me/stream{counts} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await? == 0 {
                    bail!("the server closed the SSE request");
                }
                head.push(byte[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                bail!("SSE: {}", String::from_utf8_lossy(&head));
            }
            Ok(tokio::spawn(async move {
                // Chunked transfer encoding wraps the events; events are
                // found by their "event:" lines, which chunk headers never match.
                let mut buf = vec![0u8; 16 * 1024];
                let mut pending = String::new();
                let mut ready = false;
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let at = Instant::now();
                    pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                    while let Some(end) = pending.find("\n\n") {
                        let block: String = pending.drain(..end + 2).collect();
                        if block.contains("event: notification") {
                            let seq = number_after(&block, "id: ").unwrap_or(0) as i64;
                            shared.notifications.fetch_add(1, Ordering::Relaxed);
                            let _ = out.send(Receipt {
                                seq,
                                tag: number_after(&block, "#"),
                                at,
                            });
                        } else if !ready && block.contains("event: counts") {
                            ready = true;
                            shared.ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }))
        }
    }
}

/// Opens a WebSocket stream for `token` that is never read: the returned
/// value holds the connection open until dropped. Its receive buffer is
/// small, so the server's writes back up quickly.
pub async fn never_reading_ws(
    base: &str,
    token: &str,
) -> anyhow::Result<Box<dyn std::any::Any + Send>> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let server: SocketAddr = authority
        .parse()
        .context("the server URL must be http://IP:port")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4 * 1024)?;
    let stream = socket.connect(server).await?;
    let url = format!("ws://{authority}/v1/me/ws?token={token}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("WebSocket handshake")?;
    Ok(Box::new(ws))
}

/// Opens one stream per token (client i on node i of the server), 128
/// handshakes at a time, and waits until every client received its first
/// counts event (it is registered with the hub). Returns the client tasks.
pub async fn connect_all(
    transport: Transport,
    server: &crate::server::Server,
    tokens: &[String],
    shared: &Arc<Shared>,
    out: &mpsc::UnboundedSender<Receipt>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let tasks: Vec<_> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, t)| open(transport, server.node(i), t, i, shared.clone(), out.clone()))
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let all = tokens.len() as u64;
    if !wait_until(std::time::Duration::from_secs(60), || {
        shared.ready.load(Ordering::Relaxed) >= all
    })
    .await
    {
        bail!(
            "only {} of {all} clients got ready",
            shared.ready.load(Ordering::Relaxed)
        );
    }
    Ok(tasks)
}

/// Waits until `check` holds or `limit` passes; true if it held.
pub async fn wait_until(limit: std::time::Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_without_json() {
        let t = r#"{"type":"notification","seq":42,"data":{"id":"x","seq":42,"title":"lat #17"}}"#;
        assert_eq!(parse_notification(t), Some((42, Some(17))));
        assert_eq!(number_after("id: 9\nevent: x", "id: "), Some(9));
        assert_eq!(local_ip(0), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(local_ip(25_000), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
    }
}
