//! deploy/: the Prometheus config, recording rules and Grafana dashboard shipped for a fleet.
//! promtool (Debian's `prometheus` package, installed by scripts/bootstrap.sh) checks the config
//! and the rules and runs the rules' unit tests; every PromQL expression is parsed and each
//! metric it names must be one llmtop exports (a real render of `MetricsState`, plus the proxy's
//! per-model request metrics) or one the rules record.

use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::export::prometheus::{MetricsState, REQUEST_METRIC_NAMES};
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use promql_parser::parser::{Expr, parse};
use promql_parser::util::{ExprVisitor, walk_expr};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// promtool from PATH; bootstrap.sh installs it with Debian's `prometheus` package.
pub fn promtool() -> PathBuf {
    which("promtool")
}

/// A program on PATH, or a failure that says how to get it.
pub fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: run scripts/bootstrap.sh (apt-get install prometheus)")
        })
}

fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(deploy())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_config_and_the_rules() {
    let text = run_promtool(&["check", "config", "prometheus.yml"]);
    assert!(text.contains("SUCCESS: 1 rule files found"), "{text}");
    let text = run_promtool(&["check", "rules", "llmtop.rules.yml"]);
    let n = recorded().len();
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let text = run_promtool(&["test", "rules", "llmtop.rules.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_rules_tests_catch_a_wrong_rule() {
    // Count prompt tokens as generated ones: promtool's tests must notice.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = std::fs::read_to_string(deploy().join("llmtop.rules.yml")).expect("rules");
    let wrong = rules.replace("{kind=\"generated\"}", "");
    assert_ne!(wrong, rules);
    std::fs::write(dir.path().join("llmtop.rules.yml"), wrong).expect("write");
    std::fs::copy(
        deploy().join("llmtop.rules.test.yml"),
        dir.path().join("llmtop.rules.test.yml"),
    )
    .expect("copy");
    let out = Command::new(promtool())
        .args(["test", "rules", "llmtop.rules.test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("host:llmtop_generated_tokens:rate1m"),
        "{text}"
    );
}

fn reading(id: &str, quantity: Quantity, value: f64, source: Source, covers: Covers) -> Reading {
    Reading {
        id: id.into(),
        device: "dev".into(),
        label: id.into(),
        quantity,
        value: Some(value),
        limit: None,
        source,
        covers,
        method: if quantity == Quantity::Energy {
            Method::Counter
        } else {
            Method::Measured
        },
        rejected: None,
        via: None,
    }
}

/// Every family a fully fed `MetricsState` renders: take the names from a real render.
fn exported() -> BTreeSet<String> {
    let tariff = Tariff::preset("DE").expect("DE");
    let mut st = MetricsState::new(Some(tariff.clone()));
    let mut ledger = Ledger::new().priced(tariff, jiff::Timestamp::now());
    for t in 0..3 {
        let t = f64::from(t);
        let s = Sample {
            t,
            readings: vec![
                reading(
                    "gpu:power",
                    Quantity::Power,
                    100.0,
                    Source::Nvml,
                    Covers::GpuBoard,
                ),
                reading(
                    "rapl:energy",
                    Quantity::Energy,
                    10.0 * t,
                    Source::Rapl,
                    Covers::CpuPackage,
                ),
                reading(
                    "t",
                    Quantity::Temperature,
                    50.0,
                    Source::Hwmon,
                    Covers::CpuPackage,
                ),
                reading("f", Quantity::FanRpm, 900.0, Source::Hwmon, Covers::Other),
                reading(
                    "p",
                    Quantity::FanPercent,
                    30.0,
                    Source::Nvml,
                    Covers::GpuBoard,
                ),
                reading(
                    "u",
                    Quantity::Utilization,
                    50.0,
                    Source::Nvml,
                    Covers::GpuBoard,
                ),
            ],
        };
        ledger.push(&s);
        st.apply_sample(&s);
        st.apply_ledger(&ledger);
    }
    st.set_engine(&llmtop::engine::scripted::ScriptedEngine::model_info());
    st.record_reply(10, 5.0);
    let text = st.render();
    let mut names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    for n in REQUEST_METRIC_NAMES {
        names.insert(n.to_string());
        if !n.ends_with("_total") {
            // Histograms: the series PromQL reads.
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{n}{s}"));
            }
        }
    }
    names
}

fn rules_yaml() -> yaml_rust2::Yaml {
    let text = std::fs::read_to_string(deploy().join("llmtop.rules.yml")).expect("rules");
    yaml_rust2::YamlLoader::load_from_str(&text)
        .expect("rules are YAML")
        .remove(0)
}

/// (record, expr) of every rule.
fn rules() -> Vec<(String, String)> {
    let y = rules_yaml();
    let mut out = Vec::new();
    for g in y["groups"].as_vec().expect("groups") {
        for r in g["rules"].as_vec().expect("rules") {
            out.push((
                r["record"].as_str().expect("record").to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    out
}

fn recorded() -> BTreeSet<String> {
    rules().into_iter().map(|(r, _)| r).collect()
}

/// Every PromQL expression of the dashboard (targets, and the host variable's query), with
/// Grafana's variables replaced by what they expand to.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy().join("grafana/llmtop-fleet.json")).expect("json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("a target has expr").to_string());
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(METRIC, label): METRIC is a selector.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.split(',').next())
                .expect("label_values query");
            out.push(inner.trim().to_string());
        }
    }
    out.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$host", "h")
        })
        .collect()
}

/// Metric names an expression selects; an error names what did not parse.
fn names_in(expr: &str) -> Result<Vec<String>, String> {
    struct Names(Vec<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(m) => &m.vs,
                _ => return Ok(true),
            };
            match &vs.name {
                Some(n) => self.0.push(n.clone()),
                None => return Err(format!("a selector without a metric name: {vs}")),
            }
            Ok(true)
        }
    }
    let ast = parse(expr).map_err(|e| format!("{expr:?}: {e}"))?;
    let mut v = Names(Vec::new());
    walk_expr(&mut v, &ast)?;
    Ok(v.0)
}

/// Names in `exprs` that are neither exported nor recorded.
fn unknown(exprs: &[String], known: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for e in exprs {
        match names_in(e) {
            Ok(names) => bad.extend(
                names
                    .into_iter()
                    .filter(|n| !known.contains(n))
                    .map(|n| format!("{n} in {e:?}")),
            ),
            Err(msg) => bad.push(msg),
        }
    }
    bad
}

#[test]
fn every_query_names_only_metrics_llmtop_exports_or_the_rules_record() {
    let exported = exported();
    // The families a real render has (a wrong render would make every check below vacuous).
    for n in [
        "llmtop_power_watts",
        "llmtop_energy_joules_total",
        "llmtop_system_energy_joules_total",
        "llmtop_system_power_watts",
        "llmtop_temperature_celsius",
        "llmtop_fan_rpm",
        "llmtop_electricity_cost_total",
        "llmtop_co2_grams_total",
        "llmtop_build_info",
    ] {
        assert!(exported.contains(n), "{n} not rendered: {exported:?}");
    }
    let mut known = exported.clone();
    known.extend(recorded());
    let rule_exprs: Vec<String> = rules().into_iter().map(|(_, e)| e).collect();
    let dash = dashboard_exprs();
    assert!(rule_exprs.len() >= 10 && dash.len() >= 20, "{dash:?}");
    let bad: Vec<String> = unknown(&rule_exprs, &known)
        .into_iter()
        .chain(unknown(&dash, &known))
        .collect();
    assert!(bad.is_empty(), "unknown metrics:\n{}", bad.join("\n"));
    // Rules build on what llmtop exports, never on a name of their own making up.
    for (record, e) in rules() {
        let names = names_in(&e).expect("parsed above");
        assert!(
            names.iter().all(|n| *n != record),
            "{record} refers to itself"
        );
    }

    // The checker itself: a misspelt name and a broken expression are both caught.
    let caught = unknown(
        &[
            "rate(llmtop_energy_joule_total[1m])".to_string(),
            "sum by (host (x)".to_string(),
        ],
        &known,
    );
    assert_eq!(caught.len(), 2, "{caught:?}");
    assert!(
        caught[0].starts_with("llmtop_energy_joule_total"),
        "{caught:?}"
    );
}

#[test]
fn the_dashboard_shows_what_the_issue_asks_per_host_and_for_the_fleet() {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/llmtop-fleet.json")).expect("json"),
    )
    .expect("JSON");
    let all: Vec<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| names_in(e).expect("parses"))
        .collect();
    for want in [
        // per host
        "llmtop_power_watts",
        "host:llmtop_generated_tokens:rate1m",
        "host:llmtop_joules_per_token:ratio_rate1m",
        "host:llmtop_electricity_cost_per_hour:rate1m",
        "llmtop_temperature_celsius",
        "llmtop_fan_rpm",
        // the fleet, per model
        "llmtop_model_energy_joules_total",
        "llmtop_model_cost_total",
        "model:llmtop_joules_per_token:ratio_rate1m",
    ] {
        assert!(all.iter().any(|n| n == want), "no panel shows {want}");
    }
    // One row per host, repeated over the host variable the target labels fill.
    let repeated = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .any(|p| p["type"] == "row" && p["repeat"] == "host");
    assert!(repeated);
    // Grafana keys panels by id: one each.
    let ids: Vec<u64> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_u64().expect("panel id"))
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}
