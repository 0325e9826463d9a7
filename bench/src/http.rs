//! A minimal keep-alive HTTP/1.1 client for the server API: one connection, one request at a
//! time, `Content-Length` bodies only (what the API answers with). Buffers are reused between
//! requests, so publishing allocates nothing per message once warmed up.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `http://host:port/prefix` split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// `host:port` as given (for the `Host` header).
    pub authority: String,
    /// Path prefix without a trailing slash, e.g. `/api`.
    pub prefix: String,
}

impl ApiEndpoint {
    /// Parses `http://host:port[/prefix]`.
    pub fn parse(url: &str) -> Result<ApiEndpoint> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("API URL {url:?} must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("API URL {url:?} has no host");
        }
        Ok(ApiEndpoint {
            authority: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// Resolves the authority to a socket address.
    pub async fn resolve(&self) -> Result<SocketAddr> {
        let authority = if self.authority.contains(':') {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))
    }
}

/// One kept-alive connection to the API.
#[derive(Debug)]
pub struct ApiConnection {
    stream: TcpStream,
    head: Vec<u8>,
    response: Vec<u8>,
    endpoint: ApiEndpoint,
    api_key: String,
}

/// What a request got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiOutcome {
    /// HTTP 200 and a body without an `error` member.
    Ok,
    /// HTTP 200 with `{"error":…}`.
    ApiError,
    /// Any other status.
    Status(u16),
}

impl ApiConnection {
    pub async fn open(addr: SocketAddr, endpoint: ApiEndpoint, api_key: String) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the API at {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(ApiConnection {
            stream,
            head: Vec::with_capacity(256),
            response: Vec::with_capacity(1024),
            endpoint,
            api_key,
        })
    }

    /// `POST <prefix>/<method>` with a JSON `body`; waits for the whole response.
    pub async fn post(&mut self, method: &str, body: &[u8]) -> Result<ApiOutcome> {
        let (status, body) = self.post_raw(method, body).await?;
        Ok(match status {
            200 if find(body, b"\"error\"").is_some() => ApiOutcome::ApiError,
            200 => ApiOutcome::Ok,
            other => ApiOutcome::Status(other),
        })
    }

    /// `POST <prefix>/<method>` with a JSON `body`: the status and the response body (valid
    /// until the next request on this connection), for callers that check every reply.
    pub async fn post_raw(&mut self, method: &str, body: &[u8]) -> Result<(u16, &[u8])> {
        use std::io::Write as _;
        self.head.clear();
        write!(
            self.head,
            "POST {}/{method} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.endpoint.prefix,
            self.endpoint.authority,
            self.api_key,
            body.len()
        )?;
        self.head.extend_from_slice(body);
        self.stream.write_all(&self.head).await?;
        let (status, body_start) = self.read_response().await?;
        Ok((status, &self.response[body_start..]))
    }

    /// Reads one response into `self.response`: its status and where its body starts.
    async fn read_response(&mut self) -> Result<(u16, usize)> {
        self.response.clear();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(head_end) = find(&self.response, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.response[..head_end])
                    .context("response head is not UTF-8")?;
                let (status, length) = parse_head(head)?;
                let total = head_end + 4 + length;
                while self.response.len() < total {
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        bail!("API connection closed in the middle of a response");
                    }
                    self.response.extend_from_slice(&chunk[..n]);
                }
                if self.response.len() > total {
                    bail!("API sent more than one response");
                }
                return Ok((status, head_end + 4));
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("API connection closed before a response");
            }
            self.response.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Status code and `Content-Length` of a response head (without the blank line).
fn parse_head(head: &str) -> Result<(u16, usize)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked API responses are not supported by the bench client");
        }
    }
    Ok((status, length.unwrap_or(0)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            ApiEndpoint::parse("http://127.0.0.1:8000/api/").unwrap(),
            ApiEndpoint {
                authority: "127.0.0.1:8000".into(),
                prefix: "/api".into()
            }
        );
        assert_eq!(ApiEndpoint::parse("http://h:1").unwrap().prefix, "");
        assert!(ApiEndpoint::parse("https://h/api").is_err());
        assert!(ApiEndpoint::parse("http:///api").is_err());
    }

    #[test]
    fn heads() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11";
        assert_eq!(parse_head(head).unwrap(), (200, 11));
        assert_eq!(parse_head("HTTP/1.1 401 Unauthorized").unwrap(), (401, 0));
        assert!(parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").is_err());
        assert!(parse_head("nonsense").is_err());
    }

    #[tokio::test]
    async fn posts_and_reads_responses_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for body in [r#"{"result":{}}"#, r#"{"error":{"code":102,"message":""}}"#] {
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut seen = Vec::new();
                while find(&seen, b"{\"x\":1}").is_none() {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                assert!(seen.starts_with(b"POST /api/publish HTTP/1.1\r\n"));
                assert!(find(&seen, b"X-API-Key: k\r\n").is_some());
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let endpoint = ApiEndpoint::parse(&format!("http://{addr}/api")).unwrap();
        let mut api = ApiConnection::open(addr, endpoint, "k".into())
            .await
            .unwrap();
        assert_eq!(
            api.post("publish", b"{\"x\":1}").await.unwrap(),
            ApiOutcome::Ok
        );
        assert_eq!(
            api.post("publish", b"{\"x\":1}").await.unwrap(),
            ApiOutcome::ApiError
        );
        server.await.unwrap();
    }
}
