//! A lean HTTP/1.1 client connection for the load generator: write the
//! pre-rendered request bytes, read one response (status, headers via
//! `httparse`, body by Content-Length, chunked, or until close), keep the
//! connection alive when the server allows.
//!
//! Why not reqwest/hyper's client here: the generator shares two cores with
//! the server under test, and per-request work must stay near what wrk does
//! (one write, usually one read, one header parse). reqwest is used for the
//! control-plane calls in `server`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::TlsTarget;

/// A byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What went wrong with one request, by class.
#[derive(Debug)]
pub enum Failure {
    /// The connection could not be opened (refused, unreachable, timed out).
    Connect(io::Error),
    /// The connection broke or closed mid-exchange.
    Io(io::Error),
    /// The answer was not HTTP/1.x (e.g. TLS spoken back at us).
    Protocol(String),
    /// The TLS handshake failed (e.g. TLS to a plain-HTTP port, a bad certificate).
    Tls(io::Error),
}

/// One response's status and whether the connection may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub keep_alive: bool,
    pub body_bytes: usize,
}

/// An open keep-alive connection with its read buffer.
pub struct Connection {
    stream: Box<dyn Io>,
    buffer: Vec<u8>,
}

const MAX_HEADERS: usize = 64;

impl Connection {
    pub async fn open(address: SocketAddr, timeout: Duration, tls: Option<&TlsTarget>) -> Result<Self, Failure> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| Failure::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(Failure::Connect)?;
        stream.set_nodelay(true).map_err(Failure::Connect)?;
        let stream: Box<dyn Io> = match tls {
            None => Box::new(stream),
            Some(tls) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), stream);
                let tls_stream = tokio::time::timeout(timeout, handshake)
                    .await
                    .map_err(|_| Failure::Tls(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")))?
                    .map_err(Failure::Tls)?;
                Box::new(tls_stream)
            }
        };
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and reads its response.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        self.stream.write_all(request).await.map_err(Failure::Io)?;
        self.buffer.clear();
        let (status, keep_alive, header_len, framing) = loop {
            if self.read_more().await? == 0 {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                )));
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer) {
                Ok(httparse::Status::Complete(header_len)) => {
                    let status = response.code.unwrap_or(0);
                    let (keep_alive, framing) = framing_of(response.version.unwrap_or(1), response.headers, status)?;
                    break (status, keep_alive, header_len, framing);
                }
                Ok(httparse::Status::Partial) => continue,
                Err(e) => return Err(Failure::Protocol(format!("not an HTTP/1.x response: {e}"))),
            }
        };
        let body_bytes = match framing {
            Framing::Length(length) => {
                while self.buffer.len() < header_len + length {
                    if self.read_more().await? == 0 {
                        return Err(Failure::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed mid-body",
                        )));
                    }
                }
                length
            }
            Framing::Chunked => self.read_chunked(header_len).await?,
            Framing::UntilClose => {
                while self.read_more().await? > 0 {}
                return Ok(Response {
                    status,
                    keep_alive: false,
                    body_bytes: self.buffer.len() - header_len,
                });
            }
        };
        Ok(Response {
            status,
            keep_alive,
            body_bytes,
        })
    }

    async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(16 * 1024);
        }
        self.stream.read_buf(&mut self.buffer).await.map_err(Failure::Io)
    }

    /// Reads a chunked body starting at `start`; returns its decoded length.
    async fn read_chunked(&mut self, start: usize) -> Result<usize, Failure> {
        let mut at = start;
        let mut total = 0;
        loop {
            let line_end = loop {
                if let Some(offset) = self.buffer[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + offset;
                }
                if self.read_more().await? == 0 {
                    return Err(Failure::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-chunk",
                    )));
                }
            };
            let size_text = std::str::from_utf8(&self.buffer[at..line_end]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Failure::Protocol(format!("bad chunk size '{size_text}'")))?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    if let Some(offset) = self.buffer[at..].windows(2).position(|w| w == b"\r\n") {
                        if offset == 0 {
                            return Ok(total);
                        }
                        at += offset + 2;
                        continue;
                    }
                    if self.read_more().await? == 0 {
                        return Ok(total);
                    }
                }
            }
            while self.buffer.len() < at + size + 2 {
                if self.read_more().await? == 0 {
                    return Err(Failure::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-chunk",
                    )));
                }
            }
            total += size;
            at += size + 2;
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing_of(version: u8, headers: &[httparse::Header<'_>], status: u16) -> Result<(bool, Framing), Failure> {
    let mut keep_alive = version >= 1;
    let mut framing = None;
    for header in headers {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .map_err(|_| Failure::Protocol(format!("bad Content-Length '{value}'")))?;
            framing = Some(Framing::Length(length));
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Some(Framing::Chunked);
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((keep_alive, Framing::Length(0)));
    }
    Ok(match framing {
        Some(framing) => (keep_alive, framing),
        None => (false, Framing::UntilClose),
    })
}
