//! The source tree shows the layers, and this test keeps it honest: dependencies run one way
//! (lib.rs draws the picture) and no two modules depend on each other, directly or round a
//! longer loop. It reads src/ as text, so it needs no build of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the top-level modules it may use.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let below = |upto: &str| -> Vec<&'static str> {
        const ORDER: [&str; 12] = [
            "util",
            "sensors",
            "engine",
            "accounting",
            "metering",
            "report",
            "export",
            "proxy",
            "cli",
            "config",
            "logging",
            "term",
        ];
        let i = ORDER.iter().position(|m| *m == upto).unwrap_or(0);
        ORDER[..i].to_vec()
    };
    let mut a = BTreeMap::new();
    a.insert("util", vec![]);
    a.insert("sensors", vec!["util"]);
    a.insert("engine", vec!["util"]);
    a.insert("accounting", vec!["util", "sensors", "engine"]);
    a.insert("metering", below("metering"));
    a.insert("report", below("report"));
    a.insert("export", below("export"));
    a.insert("proxy", below("proxy"));
    a.insert("cli", below("cli"));
    a.insert("config", below("config"));
    a.insert("logging", below("logging"));
    a.insert("term", below("term"));
    let mut top = below("term");
    top.push("term");
    a.insert("dashboard", top.clone());
    a.insert("commands", top);
    a
}

/// Module path (e.g. `["sensors", "powercap"]`) of every file under src/, lib.rs and main.rs
/// excluded.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            if p.is_dir() {
                let mut pre = prefix.to_vec();
                pre.push(name);
                walk(&p, &pre, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let mut m = prefix.to_vec();
                if name != "mod" {
                    m.push(name);
                }
                if m.is_empty() || m == ["lib"] || m == ["main"] {
                    continue;
                }
                out.insert(m, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// Paths the file refers to, as module segments: `crate::a::b::C` and `super::x`.
fn references(text: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        refs.push(ident(&code[i + "crate::".len()..]));
    }
    // `super::` is the parent module: for `a/b.rs` that is `a`, for `a/mod.rs` the root.
    let parent: Vec<String> = own[..own.len().saturating_sub(1)].to_vec();
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut p = parent.clone();
        p.extend(ident(&code[i + "super::".len()..]));
        refs.push(p);
    }
    refs
}

/// The longest module path that is a prefix of `path`.
fn resolve(path: &[String], mods: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut g = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).expect("read source");
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let deps: BTreeSet<Vec<String>> = references(&text, m)
            .iter()
            .filter_map(|p| resolve(p, &mods))
            // A folder's mod.rs declares and re-exports its children: not a dependency.
            .filter(|d| d != m && !(is_mod_rs && d.starts_with(m)))
            .collect();
        g.insert(m.clone(), deps);
    }
    g
}

#[test]
fn layers_depend_one_way() {
    let allowed = allowed();
    let mut bad = Vec::new();
    for (m, deps) in graph() {
        let layer = m[0].as_str();
        let ok = allowed
            .get(layer)
            .unwrap_or_else(|| panic!("src/{layer} is not a known layer: add it to allowed()"));
        for d in deps {
            let to = d[0].as_str();
            if to != layer && !ok.contains(&to) {
                bad.push(format!("{} uses {}", m.join("::"), d.join("::")));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "layer rule broken (see lib.rs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_module_cycles() {
    let g = graph();
    // Tarjan's strongly connected components, iteratively small enough to recurse.
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        sccs: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.sccs.push(comp);
            }
        }
    }
    let mut t = T {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    let cycles: Vec<String> = t.sccs.iter().map(|c| c.join(" <-> ")).collect();
    assert!(
        cycles.is_empty(),
        "modules that depend on each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checker_sees_a_planted_cycle_and_a_layer_breach() {
    // The checker itself must be able to fail: a tiny tree with both faults.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("sensors")).unwrap();
    std::fs::write(src.join("sensors/mod.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("sensors/a.rs"), "use super::b::X;\n").unwrap();
    std::fs::write(
        src.join("sensors/b.rs"),
        "use crate::sensors::a::Y;\nuse crate::dashboard::Z;\n",
    )
    .unwrap();
    std::fs::create_dir_all(src.join("dashboard")).unwrap();
    std::fs::write(src.join("dashboard/mod.rs"), "").unwrap();
    let mods = modules(src);
    let a = vec!["sensors".to_string(), "a".to_string()];
    let b = vec!["sensors".to_string(), "b".to_string()];
    let refs_a: Vec<_> = references("use super::b::X;\n", &a)
        .iter()
        .filter_map(|p| resolve(p, &mods))
        .collect();
    assert_eq!(refs_a, vec![b.clone()]);
    let refs_b: Vec<_> = references("use crate::sensors::a::Y;\nuse crate::dashboard::Z;\n", &b)
        .iter()
        .filter_map(|p| resolve(p, &mods))
        .collect();
    assert_eq!(refs_b, vec![a, vec!["dashboard".to_string()]]);
    assert!(!allowed()["sensors"].contains(&"dashboard"));
}
