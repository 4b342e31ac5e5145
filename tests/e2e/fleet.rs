//! The fleet view, end to end: `llmtop serve` on live synthetic sysfs trees scraped by Debian's
//! real Prometheus (deploy/'s config and rules), `llmtop --remote` reading other hosts'
//! `/metrics` in a real terminal, and run cards fetched over HTTP by `llmtop compare`.
//!
//! Needs `prometheus` (and promtool) on PATH: scripts/bootstrap.sh installs Debian's package.

use crate::live::{self, LiveMachine, Profile};
use crate::tmux::Tmux;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program on PATH, or a failure that says how to get it.
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: run scripts/bootstrap.sh (apt-get install prometheus)")
        })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    l.local_addr().expect("addr").port()
}

/// Kills the process whatever happens, so a failed assertion leaves nothing behind.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url`: status and body (`None`: no answer).
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let mut r = agent.get(url).call().ok()?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// `llmtop serve` on a live machine's tree and plug, priced in `region`, on a free port.
pub struct Serve {
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    _child: Reap,
}

impl Serve {
    pub fn start(machine: &LiveMachine, region: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        Self::start_in(machine, region, data)
    }

    /// With a data dir prepared beforehand (snapshots in it, say).
    pub fn start_in(machine: &LiveMachine, region: &str, data: tempfile::TempDir) -> Self {
        let cfg = data.path().join("config.toml");
        // The plug polled at the sampler's 4 Hz: its counter is at most 0.25 s old at a scrape.
        std::fs::write(
            &cfg,
            format!(
                "{}rate_hz = 4.0\n\n[pricing]\nregion = \"{region}\"\n",
                machine.plug_config()
            ),
        )
        .expect("config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Reap(
            Command::new(env!("CARGO_BIN_EXE_llmtop"))
                .arg("--config")
                .arg(&cfg)
                .args(["serve", "--sysfs-root"])
                .arg(&machine.root)
                .args(["--metrics-addr", &addr.to_string()])
                .env("LLMTOP_DATA_DIR", data.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn llmtop serve"),
        );
        let s = Self {
            addr,
            data,
            _child: child,
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Some((200, body)) = http_get(&s.url("/metrics"))
                && body.contains("llmtop_system_power_watts{")
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("llmtop serve on {addr} did not report whole-machine power within 20 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Debian's Prometheus on 127.0.0.1 with deploy/prometheus.yml made to scrape `targets` every
/// second, the rules evaluated every second, storage in a temp dir.
struct Prometheus {
    port: u16,
    _child: Reap,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Self {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let dir = tempfile::tempdir().expect("tempdir");
        let example = std::fs::read_to_string(deploy.join("prometheus.yml")).expect("config");
        let list: String = targets
            .iter()
            .map(|a| format!("          - {a}\n"))
            .collect();
        let cfg = example
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace(
                "          - gpu-box-1:9464\n          - gpu-box-2:9464\n          - mac-mini:9464\n",
                &list,
            );
        assert!(
            cfg.contains(&list) && cfg.contains("scrape_interval: 1s"),
            "deploy/prometheus.yml changed shape; update this test:\n{cfg}"
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).expect("write config");
        std::fs::copy(
            deploy.join("llmtop.rules.yml"),
            dir.path().join("llmtop.rules.yml"),
        )
        .expect("copy rules");
        let port = free_port();
        let child = Reap(
            Command::new(which("prometheus"))
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn prometheus"),
        );
        let p = Self {
            port,
            _child: child,
            _dir: dir,
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some((200, _)) = http_get(&format!("http://127.0.0.1:{port}/-/ready")) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus on 127.0.0.1:{port} not ready within 30 s");
    }

    /// An instant query: (labels, value) of each series.
    fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let body = agent
            .get(&format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query("query", q)
            .call()
            .expect("query prometheus")
            .body_mut()
            .read_to_string()
            .expect("body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["status"], "success", "{q}: {body}");
        v["data"]["result"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|r| {
                let value: f64 = r["value"][1]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("number");
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The one series `q` returns.
    fn one(&self, q: &str) -> f64 {
        let r = self.query(q);
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        r[0].1
    }
}

#[test]
fn real_prometheus_scrapes_serve_and_the_rules_match_the_profile() {
    // 40 W CPU (RAPL counter), 100 W GPU (hwmon power, integrated), 30 W rest: the plug
    // measures 170 W at the wall. A flat profile: any window's true rate is exactly these.
    let (cpu, gpu, rest) = (40.0, 100.0, 30.0);
    let machine = LiveMachine::start(Profile::flat(cpu, gpu, rest));
    let wall = cpu + gpu + rest;
    let serve = Serve::start(&machine, "DE");
    let prom = Prometheus::start(&[serve.addr]);

    // The rules' windows are a minute: wait until Prometheus holds a minute and a bit of
    // scrapes, so rate() over [1m] has no gap at its start.
    let t0 = Instant::now();
    let mut first_scrape = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let up = prom.query("up{job=\"llmtop\"} == 1");
        if up.len() == 1 {
            first_scrape = Some(Instant::now());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let first = first_scrape.expect("Prometheus scraped llmtop serve within 20 s");
    let host = prom.query("up{job=\"llmtop\"}");
    assert_eq!(host[0].0["host"], "127.0.0.1", "{host:?}");
    std::thread::sleep(Duration::from_secs(63).saturating_sub(first.elapsed()));

    // Each joule counter's rate is its channel's power.
    let rate = |covers: &str| {
        prom.one(&format!(
            "rate(llmtop_energy_joules_total{{covers=\"{covers}\"}}[50s])"
        ))
    };
    live::assert_within("RAPL package rate, W", rate("cpu_package"), cpu, 0.01);
    live::assert_within("amdgpu power integrated, W", rate("gpu_board"), gpu, 0.01);
    live::assert_within("wall plug rate, W", rate("wall"), wall, 0.01);
    live::assert_within(
        "whole-machine energy rate, W",
        prom.one("rate(llmtop_system_energy_joules_total[50s])"),
        wall,
        0.01,
    );

    // The recording rules, as Prometheus evaluated them (every second).
    live::assert_within(
        "host:llmtop_system_power_watts:rate1m",
        prom.one("host:llmtop_system_power_watts:rate1m{host=\"127.0.0.1\"}"),
        wall,
        0.01,
    );
    let price = 0.38; // DE, EUR per kWh
    live::assert_within(
        "host:llmtop_electricity_cost_per_hour:rate1m, EUR",
        prom.one("host:llmtop_electricity_cost_per_hour:rate1m{currency=\"EUR\",region=\"DE\"}"),
        wall / 1000.0 * price,
        0.01,
    );
    live::assert_within(
        "host:llmtop_co2_grams_per_hour:rate1m",
        prom.one("host:llmtop_co2_grams_per_hour:rate1m{region=\"DE\"}"),
        wall / 1000.0 * 381.0,
        0.01,
    );
    // Nothing generated: zero tokens per second, and no joules per token at all (not +Inf).
    assert_eq!(prom.one("host:llmtop_generated_tokens:rate1m"), 0.0);
    assert!(
        prom.query("host:llmtop_joules_per_token:ratio_rate1m")
            .is_empty()
    );
    assert_eq!(prom.one("llmtop_build_info"), 1.0);
    drop(serve);
}

#[test]
fn serve_serves_its_run_cards_and_compare_fetches_them_beside_files() {
    // Three cards in the snapshots dir of the serving machine, plus a JSON file that is not a
    // card; the served copies leave the conversation behind.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runcards");
    let data = tempfile::tempdir().expect("tempdir");
    let shelf = data.path().join("snapshots");
    std::fs::create_dir_all(&shelf).expect("mkdir");
    for (file, name) in [
        ("mac-mini.json", "20250601T100000Z-fixture-mac-mini.json"),
        ("rtx4090.json", "20250601T120000Z-fixture-rtx4090.json"),
    ] {
        std::fs::copy(fixtures.join(file), shelf.join(name)).expect("copy card");
    }
    std::fs::write(shelf.join("notes.json"), "{\"secret\": 1}").expect("write");
    std::fs::write(data.path().join("private.json"), "{\"secret\": 2}").expect("write");
    let machine = LiveMachine::start(Profile::flat(10.0, 20.0, 30.0));
    let serve = Serve::start_in(&machine, "DE", data);

    let (status, body) = http_get(&serve.url("/runcards/")).expect("list");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON list");
    assert_eq!(list["schema"], "llmtop.runcards/1");
    let names: Vec<&str> = list["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "20250601T120000Z-fixture-rtx4090.json",
            "20250601T100000Z-fixture-mac-mini.json"
        ]
    );
    assert_eq!(list["cards"][0]["host"], "fixture-rtx4090");
    assert_eq!(
        list["cards"][0]["url"],
        "/runcards/20250601T120000Z-fixture-rtx4090.json"
    );

    let (status, latest) = http_get(&serve.url("/runcards/latest.json")).expect("latest");
    assert_eq!(status, 200);
    let latest: serde_json::Value = serde_json::from_str(&latest).expect("card");
    assert_eq!(latest["host"]["hostname"], "fixture-rtx4090");
    assert!(latest["transcript"].is_null(), "{latest}");
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("rtx4090.json")).expect("read"),
    )
    .expect("card");
    assert!(on_disk["transcript"].is_array());
    for key in ["generated_tokens", "gen_tok_s"] {
        assert_eq!(latest["session"][key], on_disk["session"][key], "{key}");
    }
    assert_eq!(
        latest["session"]["energy"]["total_j"],
        on_disk["session"]["energy"]["total_j"]
    );

    // Only cards, only by plain name.
    for path in [
        "/runcards/notes.json",
        "/runcards/../private.json",
        "/runcards/%2e%2e/private.json",
        "/runcards/nothing.json",
    ] {
        let (status, body) = http_get(&serve.url(path)).expect("answer");
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("secret"), "{path}: {body}");
    }

    // compare: the served machine's latest card by its bare URL, all its cards by the list,
    // a file beside them, and a host that is not there: one line for it, the rest compared.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args(["compare", "--json"])
        .arg(format!("http://{}", serve.addr))
        .arg(serve.url("/runcards/"))
        .arg(fixtures.join("nuc.json"))
        .arg(&dead)
        .env("LLMTOP_DATA_DIR", serve.data.path())
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).expect("compare JSON");
    let machines: Vec<(&str, &str)> = c["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .map(|m| {
            (
                m["machine"].as_str().expect("machine"),
                m["file"].as_str().expect("file"),
            )
        })
        .collect();
    let latest_url = format!("http://{}/runcards/latest.json", serve.addr);
    assert_eq!(machines.len(), 4, "{machines:?}");
    assert!(
        machines
            .iter()
            .any(|(m, f)| m.contains("rtx4090") && *f == latest_url),
        "{machines:?}"
    );
    assert!(
        machines.iter().any(|(m, f)| m.contains("mac-mini")
            && f.ends_with("20250601T100000Z-fixture-mac-mini.json")),
        "{machines:?}"
    );
    assert!(
        machines
            .iter()
            .any(|(m, f)| m.contains("nuc") && f.ends_with("nuc.json")),
        "{machines:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l
            .starts_with(&format!("llmtop compare: {dead}/runcards/latest.json: "))
            && l.contains("llmtop serve")),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 4 run cards could not be read"),
        "{stderr}"
    );
}

/// The first "N W" figure in `line`.
fn watts_in(line: &str) -> Option<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == "W")
        .and_then(|w| w[0].parse().ok())
}

fn near(line: &str, want: f64) -> bool {
    watts_in(line).is_some_and(|w| (w - want).abs() <= 0.02 * want)
}

/// The table row of the host at `addr`.
fn row<'a>(screen: &'a str, addr: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(addr) && l.trim_start().starts_with('│'))
        .unwrap_or("")
}

#[test]
fn remote_view_shows_two_live_hosts_and_two_dead_ones_in_a_real_terminal() {
    // Two machines at known power, each with its own `llmtop serve`; a host that accepts the
    // connection and never answers, and one with nothing listening.
    let a = LiveMachine::start(Profile::flat(20.0, 60.0, 30.0));
    let b = LiveMachine::start(Profile::flat(40.0, 100.0, 30.0));
    let serve_a = Serve::start(&a, "DE");
    let serve_b = Serve::start(&b, "US");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let dead_addr = format!("127.0.0.1:{}", free_port());
    let data = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "LLMTOP_DATA_DIR='{}' '{}' --remote http://{} {} http://{silent_addr} http://{dead_addr}/metrics; echo LLMTOP-EXIT:$?; sleep 60",
        data.path().display(),
        env!("CARGO_BIN_EXE_llmtop"),
        serve_a.addr,
        serve_b.addr,
    );
    let started = Instant::now();
    let tmux = Tmux::start("remote", 130, 40, &script);
    let (a_addr, b_addr) = (serve_a.addr.to_string(), serve_b.addr.to_string());
    // Both live hosts up and the refused one down at once; the silent one down after the
    // 2 s timeout, never holding the others up.
    let screen = tmux.wait_for("the host table", Duration::from_secs(15), |s| {
        near(row(s, &a_addr), 110.0)
            && near(row(s, &b_addr), 170.0)
            && row(s, &silent_addr).contains("down")
            && row(s, &dead_addr).contains("down")
    });
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(screen.contains("2 of 4 hosts up"), "{screen}");
    for h in [&a_addr, &b_addr] {
        assert!(row(&screen, h).contains(" up "), "{screen}");
    }
    // A few seconds of the hosts' cost counters give the cost per hour of 110 W at
    // 0.38 EUR/kWh (0.0418) and of 170 W at 0.175 USD/kWh (0.02975), in each one's currency.
    let screen = tmux.wait_for("cost rates", Duration::from_secs(15), |s| {
        row(s, &a_addr).contains("4.2 €ct/h") && row(s, &b_addr).contains("3.0 ¢/h")
    });
    assert!(
        row(&screen, &silent_addr).contains("down: no answer within 2000 ms"),
        "{screen}"
    );
    assert!(row(&screen, &dead_addr).contains("down: "), "{screen}");
    // No tokens generated anywhere: no J/token, not a division by zero.
    assert!(!screen.contains("inf"), "{screen}");
    // The first host's gauges: whole machine on the wall basis and each channel.
    assert!(screen.contains(&format!("Power · {a_addr}")), "{screen}");
    let gauge = |s: &str, what: &str| {
        s.lines()
            .find(|l| l.contains(what))
            .and_then(|l| watts_in(l.split('│').nth(1).unwrap_or("")))
    };
    assert!(screen.contains("W whole machine (wall)"), "{screen}");
    assert!(
        gauge(&screen, "whole machine").is_some_and(|w| (w - 110.0).abs() < 2.2),
        "{screen}"
    );
    assert!(
        gauge(&screen, "package-0").is_some_and(|w| (w - 20.0).abs() < 1.0),
        "{screen}"
    );
    assert!(
        gauge(&screen, "gpu_board").is_some_and(|w| (w - 60.0).abs() < 0.1),
        "{screen}"
    );
    // Select the second host: its gauges and temperature (40 + 100 W x 0.2 = 60 °C).
    tmux.keys(&["Down"]);
    let screen = tmux.wait_for("the second host", Duration::from_secs(5), |s| {
        s.contains(&format!("Power · {b_addr}")) && s.contains("W whole machine")
    });
    assert!(screen.contains("60.0°C"), "{screen}");
    // The silent host's own view names the timeout.
    tmux.keys(&["Down"]);
    let screen = tmux.wait_for("the silent host", Duration::from_secs(5), |s| {
        s.contains(&format!("Power · {silent_addr}")) || s.contains("no answer within")
    });
    assert!(screen.contains("no answer within 2000 ms"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("a clean exit", Duration::from_secs(5), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    assert_eq!(tmux.terminal_flags(), "0 1");
    drop(silent);

    // SIGTERM (a closed SSH session, a service manager) also puts the terminal back.
    let script = format!(
        "LLMTOP_DATA_DIR='{}' '{}' --remote http://{dead_addr}; echo LLMTOP-EXIT:$?; sleep 60",
        data.path().display(),
        env!("CARGO_BIN_EXE_llmtop"),
    );
    let tmux = Tmux::start("remote-term", 100, 30, &script);
    tmux.wait_for("the dead host", Duration::from_secs(10), |s| {
        s.contains("0 of 1 hosts up") && s.contains("down: ")
    });
    let shell: u32 = tmux
        .cmd(&["display", "-p", "-t", "e2e", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("pane pid");
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("children of the pane's shell");
    let llmtop: i32 = children
        .split_whitespace()
        .next()
        .expect("llmtop runs under the shell")
        .parse()
        .expect("pid");
    // SAFETY: kill(2) on the llmtop this test started, by its PID.
    assert_eq!(unsafe { libc::kill(llmtop, libc::SIGTERM) }, 0);
    tmux.wait_for("exit on SIGTERM", Duration::from_secs(5), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    assert_eq!(tmux.terminal_flags(), "0 1");
}

#[test]
fn remote_urls_that_cannot_be_used_are_one_line_before_the_terminal_is_touched() {
    for (url, why) in [
        ("ftp://gpu-box", "the scheme must be http:// or https://"),
        (
            "http://gpu-box:99999",
            "the port must be a number from 1 to 65535",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args(["--remote", url])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("llmtop: --remote {url}: bad URL: {why}")),
            "{stderr}"
        );
        // Nothing drawn: no alternate screen was entered.
        assert!(out.stdout.is_empty());
    }
}
