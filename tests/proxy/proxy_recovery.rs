//! Recovery: an upstream down when the proxy starts is said once on stderr, tried again with a
//! growing pause, and said again once when it answers; requests meanwhile get a 502 record
//! naming their model, and the first after it answers goes through.

use super::post;
use super::proxy_durable::{Binary, read_records};
use super::proxy_hostile::{SSE_HEAD, chunk};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn an_upstream_down_at_start_is_retried_with_backoff_and_its_recovery_said() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let data = tempfile::tempdir().expect("tempdir");
    let b = Binary::start(data.path(), port, &[], None);
    let down = b.said("not answering", Duration::from_secs(10));
    assert!(down.contains(&format!("upstream http://{port}")), "{down}");
    assert!(down.to_lowercase().contains("refused"), "{down}");
    assert!(down.contains("trying again in 0.5 s"), "{down}");
    let body = "{\"model\":\"quick\",\"stream\":true}";
    let got = post(b.addr, "/v1/chat/completions", body);
    assert_eq!(got.status, 502);
    // The server comes up a second or so after the proxy: the probes, 0.5, 1, 2 s apart,
    // find it within the pause then in force (at most 2 s here).
    std::thread::sleep(Duration::from_millis(1000));
    let l = TcpListener::bind(port).expect("the port again");
    let up_at = Instant::now();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            if s.read(&mut buf).unwrap_or(0) == 0 {
                continue; // a probe: connected and closed
            }
            let head = SSE_HEAD.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            for i in 0..3 {
                let line = format!(
                    "data: {}\n\n",
                    serde_json::json!({"choices":[{"index":0,"delta":{"content":format!("t{i}")}}],"model":"quick"})
                );
                let _ = chunk(&mut s, line.as_bytes());
            }
            let _ = chunk(&mut s, b"data: [DONE]\n\n");
            let _ = s.write_all(b"0\r\n\r\n");
        }
    });
    let up = b.said("answers", Duration::from_secs(10));
    let took = up_at.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(up, format!("llmtop: upstream http://{port} answers"));
    let got = post(b.addr, "/v1/chat/completions", body);
    assert_eq!(got.status, 200);
    let path = data.path().join("requests.jsonl");
    let end = Instant::now() + Duration::from_secs(30);
    while read_records(std::slice::from_ref(&path)).len() < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = b.err.clone();
    assert!(b.stop().success());
    let lines = err.lock().expect("lines").clone();
    assert_eq!(
        lines.iter().filter(|l| l.contains("not answering")).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("answers")).count(),
        1,
        "{lines:?}"
    );
    let recs = read_records(&[path]);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].status, recs[0].outcome.as_str()),
        (502, "upstream_unreachable")
    );
    assert_eq!(recs[0].model.as_deref(), Some("quick"));
    assert_eq!((recs[1].status, recs[1].generated_tokens), (200, Some(3)));
}
