//! A minimal HTTP client for the API and WebDriver tests: one HTTP/1.1
//! request per connection (`Connection: close`; bodies by Content-Length,
//! chunked, or to the end), bounded by a timeout on every read and write,
//! plus a reader of Server-Sent Events (HTTP/1.0, so the stream is not
//! chunked).
//!
//! The tests reach daemons in network namespaces by opening the TCP
//! connection on a thread inside the namespace (`Host::enter`); the socket
//! keeps that namespace and is used from the test's thread afterwards.

#![allow(dead_code)] // each test uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Every read and write gives up after this long.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    /// Every header, names in lower case, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    /// The first header named `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or an error that shows it.
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("not JSON (status {}): {}", self.status, self.body))
    }
}

/// Connects to `address` from the current thread's namespace.
pub(crate) fn connect(address: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends one request on `stream` and reads the whole answer.
pub(crate) fn request(
    stream: TcpStream,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    request_for_host(stream, "localhost", method, path, body)
}

/// [`request`] with another `Host` header.
pub(crate) fn request_for_host(
    stream: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    request_with(stream, host, &[], method, path, body)
}

/// [`request`] with `headers` too.
pub(crate) fn request_with_headers(
    stream: TcpStream,
    headers: &[(&str, &str)],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    request_with(stream, "localhost", headers, method, path, body)
}

/// [`request`] with the API's token as a bearer header.
pub(crate) fn request_with_token(
    stream: TcpStream,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    let authorization = format!("Bearer {token}");
    request_with_headers(
        stream,
        &[("Authorization", &authorization)],
        method,
        path,
        body,
    )
}

fn request_with(
    mut stream: TcpStream,
    host: &str,
    headers: &[(&str, &str)],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read the header, then the body by Content-Length where there is one
    // (some servers keep the connection open after an HTTP/1.0 answer),
    // else to the end.
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        if read == 0 {
            bail!("the answer to {method} {path} ended in its header: {head:?}");
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let header = |wanted: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut raw = Vec::new();
    match header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        Some(length) => {
            raw.resize(length, 0);
            reader
                .read_exact(&mut raw)
                .with_context(|| format!("reading the body of {method} {path}"))?;
        }
        None => {
            reader
                .read_to_end(&mut raw)
                .with_context(|| format!("reading the body of {method} {path}"))?;
        }
    }
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        raw = dechunk(&raw).with_context(|| format!("the chunked body of {method} {path}"))?;
    }
    let body = String::from_utf8_lossy(&raw).into_owned();
    Ok(Reply {
        status,
        content_type,
        headers,
        body,
    })
}

/// The body of a `Transfer-Encoding: chunked` answer read to its end.
fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("no chunk size line")?;
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(raw.get(..size).context("short chunk")?);
        raw = raw.get(size + 2..).context("no chunk end")?;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct SseMessage {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// Reads events from an open `GET /api/v1/events`.
pub(crate) struct SseStream {
    reader: BufReader<TcpStream>,
}

impl SseStream {
    /// Sends the request on `stream` with the API's `token` and reads the
    /// answer's header.
    pub(crate) fn open(mut stream: TcpStream, path: &str, token: &str) -> anyhow::Result<Self> {
        stream.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(" 200") {
            bail!("the event stream answered {status:?}");
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("the event stream closed in its header");
            }
            if line == "\r\n" || line == "\n" {
                return Ok(Self { reader });
            }
        }
    }

    /// The next event, or `None` if none came by `deadline`.
    pub(crate) fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<SseMessage>> {
        let mut message = SseMessage {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        let mut seen = false;
        loop {
            #[allow(clippy::disallowed_methods)] // tests measure real time
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Ok(None);
            };
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => bail!("the event stream closed"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if seen {
                    return Ok(Some(message));
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // keep-alive comment
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            seen = true;
            match field {
                "event" => message.event = value.to_owned(),
                "id" => message.id = Some(value.to_owned()),
                "data" => {
                    if !message.data.is_empty() {
                        message.data.push('\n');
                    }
                    message.data.push_str(value);
                }
                _ => {}
            }
        }
    }
}
