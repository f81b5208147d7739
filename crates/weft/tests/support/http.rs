//! A minimal HTTP/1.0 client for the API and WebDriver tests: one request
//! per connection (`Connection: close`, so no chunked bodies), bounded by a
//! timeout on every read and write, plus a reader of Server-Sent Events.
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
    pub(crate) body: String,
}

impl Reply {
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
    mut stream: TcpStream,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP header in the answer to {method} {path}: {text:?}");
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let content_type = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    Ok(Reply {
        status,
        content_type,
        body: body.to_owned(),
    })
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
    /// Sends the request on `stream` and reads the answer's header.
    pub(crate) fn open(mut stream: TcpStream, path: &str) -> anyhow::Result<Self> {
        stream.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
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
