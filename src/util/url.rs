//! The one check of an address typed by a user: an http(s) URL (a plug, a server, a remote
//! host: scheme, host, port, no credentials) or a `HOST:PORT` to listen on. Each caller wraps
//! the reason in its own error and adds its own rules (a server's base path, a plug's query).

use ureq::http::Uri;
use ureq::http::uri::Authority;

/// An http(s) URL reduced to what names the machine, plus its path and whether it had a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub https: bool,
    /// As written (an IPv6 address keeps its brackets).
    pub host: String,
    /// Explicit or the scheme's default.
    pub port: u16,
    pub path: String,
    pub query: bool,
}

impl Parsed {
    /// The port is the scheme's default (80 or 443), whether written or not.
    pub fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }
}

/// Check `url` is an absolute http:// or https:// URL with a host and, if written, a port from
/// 1 to 65535; `Err` is the reason, for the caller's one-line message.
pub fn parse(url: &str) -> Result<Parsed, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| e.to_string())?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("the scheme must be http:// or https://".into()),
    };
    let auth = uri.authority().ok_or("no host")?;
    // Credentials would end up in every error line and listing.
    if auth.as_str().contains('@') {
        return Err("user:password@ is not supported".into());
    }
    let host = auth.host();
    if host.is_empty() {
        return Err("no host".into());
    }
    // `Uri` accepts any text after the colon and then reports no port: check it here, or
    // `h:8o` would quietly mean port 80.
    let port = match auth.as_str().get(host.len()..).unwrap_or("") {
        "" if https => 443,
        "" => 80,
        rest => rest
            .strip_prefix(':')
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
            .ok_or("the port must be a number from 1 to 65535")?,
    };
    Ok(Parsed {
        https,
        host: host.to_string(),
        port,
        path: uri.path().to_string(),
        query: uri.query().is_some(),
    })
}

/// Check a listen address `HOST:PORT`: a host name, an IPv4 address or a bracketed IPv6
/// address, and a port from 0 (any free port) to 65535. `Ok`: the host (brackets removed) and
/// the port; `Err` is the reason, for the caller's one-line message.
pub fn listen(addr: &str) -> Result<(String, u16), String> {
    let addr = addr.trim();
    if addr.contains(['/', '@', '?', '#']) {
        return Err("not HOST:PORT (no scheme, path or user)".into());
    }
    let auth: Authority = addr.parse().map_err(|_| "not HOST:PORT".to_string())?;
    let host = auth.host();
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = auth
        .as_str()
        .get(host.len()..)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or("no port")?;
    let port = Some(port)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("the port must be a number from 0 to 65535")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_names_and_literal_ips() {
        assert_eq!(listen("127.0.0.1:0"), Ok(("127.0.0.1".into(), 0)));
        assert_eq!(listen(" localhost:9464 "), Ok(("localhost".into(), 9464)));
        assert_eq!(listen("[::1]:8080"), Ok(("::1".into(), 8080)));
        assert_eq!(
            listen("gpu-box.lan:11435"),
            Ok(("gpu-box.lan".into(), 11435))
        );
        for (bad, why) in [
            ("localhost", "no port"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:", "port"),
            ("h:8o", "port"),
            ("h:70000", "port"),
            (":80", "host"),
            ("http://h:80", "HOST:PORT"),
            ("u@h:80", "HOST:PORT"),
            ("", "HOST:PORT"),
            ("a b:80", "HOST:PORT"),
        ] {
            let e = listen(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn names_the_machine_and_refuses_what_would_mislead() {
        let p = parse("http://[::1]:8080/v1/").expect("ok");
        assert_eq!((p.host.as_str(), p.port, p.https), ("[::1]", 8080, false));
        assert_eq!(p.path, "/v1/");
        assert_eq!(parse("https://gpu-box").expect("ok").port, 443);
        assert!(parse("http://h/x?a=1").expect("ok").query);
        for (bad, why) in [
            ("ftp://h", "scheme"),
            ("http://u:p@h", "user:password"),
            ("http://h:8o", "port"),
            ("http://h:0", "port"),
            ("http://h:70000", "port"),
            ("h:80", "scheme"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
