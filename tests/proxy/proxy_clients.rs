//! Real client libraries no one here wrote, through the real `llmtop proxy` binary: the
//! `openai` Python package (streamed and not) in front of the real llama-server, the `ollama`
//! Python package in front of the stand-in Ollama. What each library hands its caller is the
//! same through the proxy as direct, and every request becomes one record whose tokens are
//! the server's own usage. The packages live in a venv scripts/bootstrap.sh makes
//! (`~/.cache/llmtop/pyclients`, pinned versions); without it the tests skip, counted.

use super::servers::LlamaServer;
use super::servers::ollama::FakeOllama;
use super::skip::skipped;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// The venv's python with `openai` and `ollama` importable, or why not.
pub fn client_python() -> Result<PathBuf, String> {
    let py = match std::env::var_os("LLMTOP_PYCLIENTS") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("LLMTOP_BUILD_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("llmtop"))
                })
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/llmtop")
                });
            cache.join("pyclients/bin/python")
        }
    };
    if !py.is_file() {
        return Err(format!(
            "{} missing: run scripts/bootstrap.sh (it makes the venv with the openai and ollama packages)",
            py.display()
        ));
    }
    let out = Command::new(&py)
        .args(["-c", "import openai, ollama"])
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import openai/ollama ({}): rerun scripts/bootstrap.sh",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(py)
}

/// Run tests/proxy/clients.py `kind` against `base`; what the library returned, as JSON.
fn run_client(py: &Path, kind: &str, base: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxy/clients.py");
    let out = Command::new(py)
        .arg(&script)
        .args([kind, base])
        // Loopback only, whatever proxy the environment names.
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run clients.py");
    assert!(
        out.status.success(),
        "clients.py {kind} {base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("clients.py JSON")
}

/// The real `llmtop proxy` binary, printing each record on stdout; killed when dropped.
pub struct BinProxy {
    child: Child,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl BinProxy {
    pub fn start(upstream: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\n").expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .arg("--config")
            .arg(&cfg)
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--sysfs-root", "tests/fixtures/sysfs/laptop", "--print"])
            .args(extra)
            .env("LLMTOP_DATA_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn llmtop proxy");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        err.read_line(&mut line).expect("first line");
        // Keep draining stderr so the proxy never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while err.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("listen address in {line:?}"));
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in out.lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` records printed, within `limit` in all.
    pub fn records(&self, n: usize, limit: Duration) -> Vec<Value> {
        let end = std::time::Instant::now() + limit;
        (0..n)
            .map(|i| {
                let left = end.saturating_duration_since(std::time::Instant::now());
                let l = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                    panic!("record {} of {n} not printed within {limit:?}", i + 1)
                });
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("record JSON {l:?}: {e}"))
            })
            .collect()
    }

    /// No further record within `wait`.
    pub fn no_more(&self, wait: Duration) {
        if let Ok(l) = self.lines.recv_timeout(wait) {
            panic!("one record too many: {l}");
        }
    }
}

impl Drop for BinProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a count, got {v}"))
}

#[test]
fn the_openai_package_gets_the_same_replies_through_the_proxy_and_each_is_recorded_once() {
    let py = match client_python() {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    let server = LlamaServer::start();
    let proxy = BinProxy::start(&server.url(), &[]);
    let direct = run_client(&py, "openai", &server.url());
    let via = run_client(&py, "openai", &proxy.url());
    for call in ["plain", "stream"] {
        let (d, v) = (&direct[call], &via[call]);
        assert!(
            !d["content"].as_str().unwrap_or("").is_empty(),
            "{call}: {d}"
        );
        // temperature 0 and the same seed: the same text, reason and counts.
        assert_eq!(d["content"], v["content"], "{call}");
        assert_eq!(d["finish_reason"], v["finish_reason"], "{call}");
        assert_eq!(d["chunks"], v["chunks"], "{call}");
        for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(d["usage"][k], v["usage"][k], "{call} usage.{k}");
        }
    }
    // One record a request, in order (the client waits for each), tokens = the usage.
    let records = proxy.records(2, Duration::from_secs(60));
    proxy.no_more(Duration::from_secs(2));
    for (r, call) in records.iter().zip(["plain", "stream"]) {
        let usage = &via[call]["usage"];
        assert_eq!(r["endpoint"], "/v1/chat/completions", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["outcome"], "complete", "{r}");
        assert_eq!(r["backend"], "llama-server", "{r}");
        assert_eq!(
            u(&r["generated_tokens"]),
            u(&usage["completion_tokens"]),
            "{call}: {r}"
        );
        let cached = r["cached_tokens"].as_u64().unwrap_or(0);
        assert_eq!(
            u(&r["prompt_tokens"]) + cached,
            u(&usage["prompt_tokens"]),
            "{call}: computed + cached = the usage's prompt tokens: {r}"
        );
        if let Some(c) = usage["prompt_tokens_details"]["cached_tokens"].as_u64() {
            assert_eq!(cached, c, "{call}: {r}");
        }
        assert_eq!(r["energy"]["method"], "attributed", "{r}");
    }
}

#[test]
fn the_ollama_package_gets_the_same_replies_through_the_proxy_and_each_is_recorded_once() {
    use super::servers::ollama::{MODELS, PROMPT_EVAL_COUNT};
    let py = match client_python() {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    let server = FakeOllama::start();
    let proxy = BinProxy::start(&server.url(), &[]);
    let direct = run_client(&py, "ollama", &server.url());
    let via = run_client(&py, "ollama", &proxy.url());
    // Everything the library returned, field for field (the stand-in is deterministic).
    assert_eq!(direct, via);
    let reply = "The sky is blue 😀.";
    assert_eq!(via["plain"]["message"]["content"], reply);
    assert_eq!(via["stream"]["content"], reply);
    assert_eq!(via["generate"]["response"], reply);
    let last = via["stream"]["chunks"]
        .as_array()
        .and_then(|c| c.last())
        .cloned()
        .expect("chunks");
    assert_eq!(last["done"], true);
    // The stand-in saw six chats/generates: three direct, three through the proxy.
    assert_eq!(server.seen().len(), 6);
    let records = proxy.records(3, Duration::from_secs(60));
    proxy.no_more(Duration::from_secs(2));
    let answers = [&via["plain"], &last, &via["generate"]];
    for ((r, want), endpoint) in
        records
            .iter()
            .zip(answers)
            .zip(["/api/chat", "/api/chat", "/api/generate"])
    {
        assert_eq!(r["endpoint"], endpoint, "{r}");
        assert_eq!(r["backend"], "ollama", "{r}");
        assert_eq!(r["model"], MODELS[0], "{r}");
        assert_eq!(r["outcome"], "complete", "{r}");
        assert_eq!(u(&r["prompt_tokens"]), u(&want["prompt_eval_count"]), "{r}");
        assert_eq!(u(&r["prompt_tokens"]), PROMPT_EVAL_COUNT);
        assert_eq!(u(&r["generated_tokens"]), u(&want["eval_count"]), "{r}");
        assert_eq!(u(&r["generated_tokens"]), 6, "six pieces");
        assert_eq!(r["tokens_from"], "Ollama's final object", "{r}");
    }
}
