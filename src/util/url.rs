//! The one check of an http(s) address typed by a user (a plug, a server, a remote host): scheme,
//! host, port, no credentials. Each caller wraps the reason in its own error and adds its own
//! rules (a server's base path, a plug's query).

use ureq::http::Uri;

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

#[cfg(test)]
mod tests {
    use super::*;

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
