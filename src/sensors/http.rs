//! A minimal blocking HTTP/1.1 GET over `TcpStream`, for smart plugs on the local network.
//!
//! Plain `http://` only (plugs and Home Assistant on a LAN rarely use TLS; a TLS client would
//! pull in a large dependency tree). Every step has a deadline, so a dead plug costs at most
//! `timeout`, and the body is capped so a misbehaving device cannot exhaust memory.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: only plain http:// URLs are supported")]
    Scheme(String),
    #[error("{0}: bad URL")]
    BadUrl(String),
    #[error("{url}: timed out after {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed HTTP response: {why}")]
    Malformed { url: String, why: String },
}

/// `http://host[:port]/path?query` split into (host, port, path).
pub fn split_url(url: &str) -> Result<(String, u16, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Scheme(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(HttpError::BadUrl(url.into()));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| HttpError::BadUrl(url.into()))?,
        ),
        _ => (authority.to_string(), 80),
    };
    Ok((host, port, path.to_string()))
}

/// GET `url` with optional extra headers; returns the body of a 2xx response.
pub fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<String, HttpError> {
    let start = Instant::now();
    let (host, port, path) = split_url(url)?;
    let io = |source: std::io::Error| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            HttpError::Timeout {
                url: url.into(),
                ms: timeout.as_millis(),
            }
        } else {
            HttpError::Io {
                url: url.into(),
                source,
            }
        }
    };
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HttpError::BadUrl(url.into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    let remaining = |start: Instant| {
        timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or(HttpError::Timeout {
                url: url.into(),
                ms: timeout.as_millis(),
            })
    };
    stream
        .set_write_timeout(Some(remaining(start)?))
        .map_err(io)?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: llmtop/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(remaining(start)?))
            .map_err(io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_BODY {
                    return Err(HttpError::Malformed {
                        url: url.into(),
                        why: "response over 1 MiB".into(),
                    });
                }
                if response_complete(&buf) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        }
    }
    parse_response(url, &buf)
}

/// With `Content-Length`, stop reading as soon as the body is in (some devices keep the
/// connection open despite `Connection: close`).
fn response_complete(buf: &[u8]) -> bool {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() >= head_end + 4 + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(url: &str, buf: &[u8]) -> Result<String, HttpError> {
    let bad = |why: &str| HttpError::Malformed {
        url: url.into(),
        why: why.into(),
    };
    let head_end = find(buf, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.lines();
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| bad("no status line"))?;
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            url: url.into(),
            status,
        });
    }
    let lower: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).collect();
    let mut body = buf[head_end + 4..].to_vec();
    if lower
        .iter()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked encoding"))?;
    } else if let Some(len) = lower
        .iter()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        body.truncate(len);
    }
    String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_txt = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://192.168.1.50").expect("url"),
            ("192.168.1.50".into(), 80, "/".into())
        );
        assert_eq!(
            split_url("http://ha.local:8123/api/states/sensor.x").expect("url"),
            ("ha.local".into(), 8123, "/api/states/sensor.x".into())
        );
        assert!(matches!(split_url("https://x"), Err(HttpError::Scheme(_))));
        assert!(matches!(
            split_url("http://h:notaport/"),
            Err(HttpError::BadUrl(_))
        ));
    }

    #[test]
    fn parses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_response("u", plain).expect("ok"), "hello");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response("u", chunked).expect("ok"), "{\"a\":1}");
        assert!(matches!(
            parse_response("u", b"HTTP/1.1 500 Oops\r\n\r\n"),
            Err(HttpError::Status { status: 500, .. })
        ));
        assert!(matches!(
            parse_response("u", b"garbage"),
            Err(HttpError::Malformed { .. })
        ));
    }
}
