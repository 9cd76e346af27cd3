//! A lean HTTP/1.1 keep-alive client for load phases, the way `wrk` loads
//! a server: requests are serialised before the clock starts, and each
//! connection writes one and reads its response (status line and
//! `content-length` body) before the next. On two shared cores the load
//! tool's own CPU is taken from the server; this client spends a fraction
//! of what a general-purpose client (reqwest) spends per request.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `host:port` of an `http://` URL.
pub fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("only http:// URLs: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .parse()
        .with_context(|| format!("not an IP address and port: {authority}"))?;
    Ok(addr)
}

/// A `POST` with a JSON body and a bearer token, as bytes on the wire.
pub fn post_json(addr: SocketAddr, path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes a request and reads its response: the status code.
    pub async fn call(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let (status, length) = head(&self.buf[..end])?;
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                if self.buf.len() > total {
                    bail!("the server sent more than the response");
                }
                return Ok(status);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        let n = self.stream.read(&mut self.buf[len..]).await?;
        self.buf.truncate(len + n);
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status code and `content-length` of a response head.
fn head(head: &[u8]) -> anyhow::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).context("a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not a status line: {status_line}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().context("a bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not read by this client");
        }
    }
    Ok((status, length.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_and_length_of_a_head() {
        let h = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 57";
        assert_eq!(head(h).unwrap(), (202, 57));
        assert!(head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked").is_err());
        assert!(head(b"garbage").is_err());
        assert_eq!(
            socket_addr("http://127.0.0.1:8080/v1").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(socket_addr("https://example.com").is_err());
    }

    #[tokio::test]
    async fn calls_a_server_over_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for status in [202, 400] {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
                let body = "{\"ok\":true}";
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });
        let mut conn = Conn::connect(addr).await.unwrap();
        let request = post_json(addr, "/v1/notifications", "k", b"{\"a\":1}");
        assert_eq!(conn.call(&request).await.unwrap(), 202);
        assert_eq!(conn.call(&request).await.unwrap(), 400);
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /v1/notifications HTTP/1.1\r\n"));
        assert!(seen[0].contains("authorization: Bearer k\r\n"));
        assert!(seen[0].ends_with("\r\n\r\n{\"a\":1}"));
    }
}
