//! Blocking HTTP(S) GET for smart plugs and Home Assistant, on `ureq` with rustls.
//!
//! One deadline covers the whole request (name lookup, connect, TLS, headers, body), so a dead
//! plug costs at most its timeout, and the body is capped so a misbehaving device cannot
//! exhaust memory. https trusts the public (webpki) roots, or for a self-signed Home Assistant
//! the plug's own `ca_file` instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Largest body read from a device; a plug's JSON is a few hundred bytes.
pub const MAX_BODY: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: bad URL: {why}; use http://HOST[:PORT] or https://HOST[:PORT]")]
    BadUrl { url: String, why: String },
    #[error("{url}: no answer within {ms} ms; check the plug is on and reachable")]
    Timeout { url: String, ms: u128 },
    #[error("{url}: host not found; check the host name in url")]
    HostNotFound { url: String },
    #[error("{url}: connection failed: {why}; check the host and port in url")]
    Io { url: String, why: String },
    #[error("{url}: cannot send the request: {why}; check token for stray characters")]
    Request { url: String, why: String },
    #[error("{url}: TLS certificate rejected: {why}; {hint}")]
    Certificate {
        url: String,
        why: String,
        hint: String,
    },
    #[error("{url}: TLS failed: {why}")]
    Tls { url: String, why: String },
    #[error("{url}: HTTP {status}{}", status_hint(*status))]
    Status { url: String, status: u16 },
    #[error("{url}: answer over 1 MiB, refused; check url points at the plug's API")]
    TooLarge { url: String },
    #[error("{url}: malformed HTTP response: {why}")]
    Malformed { url: String, why: String },
    #[error("{path}: cannot use as ca_file: {why}; give the CA certificate as a PEM file")]
    CaFile { path: String, why: String },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        300..=399 => "; redirects are not followed: put the final address in url",
        401 | 403 => "; check token (a Home Assistant long-lived access token)",
        404 => "; check url (and entity for Home Assistant)",
        500..=599 => "; the device reports a fault: check it in its own web page, or restart it",
        _ => "",
    }
}

/// A URL reduced to what names the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// As written in the URL (an IPv6 address keeps its brackets).
    pub host: String,
    /// Explicit or the scheme's default.
    pub port: u16,
}

impl Target {
    /// The port is the scheme's default (80 or 443), whether written or not.
    pub fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }
}

/// Check `url` is an absolute http:// or https:// URL with a host, and name its device.
pub fn parse_url(url: &str) -> Result<Target, HttpError> {
    let p = crate::util::url::parse(url).map_err(|why| HttpError::BadUrl {
        url: url.into(),
        why,
    })?;
    Ok(Target {
        https: p.https,
        host: p.host,
        port: p.port,
    })
}

/// An HTTP(S) client for one device.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    ca_file: Option<PathBuf>,
}

impl Client {
    /// `ca_file`: PEM file whose certificates are the only roots trusted for https (a
    /// self-signed Home Assistant); `None` trusts the public webpki roots.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, HttpError> {
        let roots = match ca_file {
            Some(path) => RootCerts::Specific(Arc::new(read_ca_file(path)?)),
            None => RootCerts::WebPki,
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            // Non-2xx is reported by `get` with the URL, and a redirect is an error: a token
            // must not follow one to another host.
            .http_status_as_error(false)
            .max_redirects(0)
            // Plugs are on the LAN: an HTTP_PROXY meant for the internet must not catch them.
            .proxy(None)
            // One connection per poll, as cheap embedded servers expect.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(concat!("llmtop/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .build()
            .new_agent();
        Ok(Self {
            agent,
            ca_file: ca_file.map(Path::to_path_buf),
        })
    }

    /// GET `url` with extra headers; the body of a 2xx answer, at most [`MAX_BODY`] bytes.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String, HttpError> {
        let mut req = self
            .agent
            .get(url)
            .header("Connection", "close")
            .config()
            .timeout_global(Some(timeout))
            .build();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.call().map_err(|e| self.error(url, timeout, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                url: url.into(),
                status,
            });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| match self.error(url, timeout, e) {
                // The connection broke after the headers: the answer is cut short.
                HttpError::Io { url, why } => HttpError::Malformed {
                    url,
                    why: format!("body cut short: {why}"),
                },
                other => other,
            })?;
        String::from_utf8(body).map_err(|_| HttpError::Malformed {
            url: url.into(),
            why: "body is not UTF-8".into(),
        })
    }

    fn error(&self, url: &str, timeout: Duration, e: ureq::Error) -> HttpError {
        let url = url.to_string();
        match e {
            ureq::Error::Timeout(_) => HttpError::Timeout {
                url,
                ms: timeout.as_millis(),
            },
            ureq::Error::Io(io) => {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) {
                    return HttpError::Timeout {
                        url,
                        ms: timeout.as_millis(),
                    };
                }
                // A failed handshake comes back as an io::Error around the rustls error.
                match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(tls) => self.tls_error(url, tls),
                    None => HttpError::Io {
                        url,
                        why: printable(&io.to_string()),
                    },
                }
            }
            ureq::Error::Rustls(tls) => self.tls_error(url, &tls),
            ureq::Error::Tls(why) => HttpError::Tls {
                url,
                why: why.into(),
            },
            ureq::Error::HostNotFound => HttpError::HostNotFound { url },
            ureq::Error::ConnectionFailed => HttpError::Io {
                url,
                why: "connection failed".into(),
            },
            ureq::Error::BodyExceedsLimit(_) => HttpError::TooLarge { url },
            ureq::Error::BadUri(why) => HttpError::BadUrl {
                url,
                why: printable(&why),
            },
            ureq::Error::Http(e) => HttpError::Request {
                url,
                why: printable(&e.to_string()),
            },
            ureq::Error::LargeResponseHeader(..) => HttpError::Malformed {
                url,
                why: "headers too large".into(),
            },
            other => HttpError::Malformed {
                url,
                why: printable(&other.to_string()),
            },
        }
    }

    fn tls_error(&self, url: String, e: &rustls::Error) -> HttpError {
        use rustls::CertificateError as C;
        let why = printable(&e.to_string());
        let rustls::Error::InvalidCertificate(cert) = e else {
            return HttpError::Tls { url, why };
        };
        let hint = match (cert, &self.ca_file) {
            (C::NotValidForName | C::NotValidForNameContext { .. }, _) => {
                "use the host name the certificate was issued for in url".to_string()
            }
            (
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
                _,
            ) => "renew the server's certificate, or check this machine's clock".to_string(),
            (_, Some(ca)) => format!(
                "check that ca_file {} holds the CA that signed the server's certificate",
                ca.display()
            ),
            (_, None) => "for a self-signed certificate, set ca_file (the CA as PEM) in this \
                          plug's [[sensors.plugs]]"
                .to_string(),
        };
        HttpError::Certificate { url, why, hint }
    }
}

/// Every certificate in a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, HttpError> {
    let bad = |why: String| HttpError::CaFile {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(printable(&e.to_string())))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no BEGIN CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// Error text that may quote the network (a certificate's names, a bad header) goes into
/// one line on a terminal: control characters are escaped, never passed through.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = |https, host: &str, port| Target {
            https,
            host: host.into(),
            port,
        };
        assert_eq!(
            parse_url("http://192.168.1.50").expect("url"),
            t(false, "192.168.1.50", 80)
        );
        assert_eq!(
            parse_url("http://ha.local:8123/api/states/sensor.x").expect("url"),
            t(false, "ha.local", 8123)
        );
        assert_eq!(
            parse_url("https://ha.local").expect("url"),
            t(true, "ha.local", 443)
        );
        assert_eq!(
            parse_url("http://[fe80::1]:8080/").expect("url"),
            t(false, "[fe80::1]", 8080)
        );
        assert!(parse_url("https://ha.local").expect("url").default_port());
        assert!(
            !parse_url("https://ha.local:80")
                .expect("url")
                .default_port()
        );
        for bad in [
            "ftp://x",
            "192.168.1.50",
            "http://h:notaport/",
            "http://h:70000/",
            "http://h:8o/",
            "http://h:/",
            "http://user:pw@h/",
            "http:///path",
            "http://h/a b",
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert!(matches!(e, HttpError::BadUrl { .. }), "{bad}: {e:?}");
            assert!(e.to_string().starts_with(bad), "{e}");
        }
    }

    #[test]
    fn status_lines_say_what_to_fix() {
        let s = |status| {
            HttpError::Status {
                url: "http://h/x".into(),
                status,
            }
            .to_string()
        };
        assert_eq!(s(418), "http://h/x: HTTP 418");
        assert!(s(500).starts_with("http://h/x: HTTP 500; the device reports a fault"));
        assert!(s(401).ends_with("check token (a Home Assistant long-lived access token)"));
        assert!(s(404).contains("check url"));
        assert!(s(301).contains("redirects are not followed"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert_eq!(printable("plain: ok"), "plain: ok");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = Client::new(Some(&path)).expect_err("no certs");
        assert!(e.to_string().contains("no BEGIN CERTIFICATE"), "{e}");
        let e = Client::new(Some(&dir.path().join("missing.pem"))).expect_err("missing");
        assert!(
            matches!(&e, HttpError::CaFile { path, .. } if path.ends_with("missing.pem")),
            "{e:?}"
        );
    }
}
