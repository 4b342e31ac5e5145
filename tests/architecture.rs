//! The source tree shows the layers, and this test keeps it honest: dependencies run one way
//! (lib.rs draws the picture) and no two modules depend on each other, directly or round a
//! longer loop. Each file under src/ is parsed with `syn`, so comments and strings are not
//! code, grouped imports (`use crate::{a::X, b::Y}`) count every branch, and `self::`,
//! `super::` (at any depth, inline modules included) and paths in expressions, types and
//! macro arguments resolve to the module they name. It needs no build of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

type Module = Vec<String>;
type Graph = BTreeMap<Module, BTreeSet<Module>>;

/// Each top-level module and the top-level modules it may use.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let below = |upto: &str| -> Vec<&'static str> {
        const ORDER: [&str; 13] = [
            "util",
            "net",
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
    a.insert("net", vec!["util"]);
    a.insert("sensors", vec!["util", "net"]);
    a.insert("engine", vec!["util", "net"]);
    a.insert("accounting", vec!["util", "net", "sensors", "engine"]);
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

/// Module path (e.g. `["sensors", "powercap"]`) of every file under `src`, lib.rs and main.rs
/// excluded.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, PathBuf>) {
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

/// Collects every path a file names, made absolute (module segments from the crate root).
struct Refs<'a> {
    /// The module the code being visited is in: the file's, plus any inline `mod x { }`.
    here: Module,
    /// Children of a module that exist (files), for paths that start with one (`child::f`).
    mods: &'a BTreeMap<Module, PathBuf>,
    out: Vec<Module>,
}

impl Refs<'_> {
    /// `segments` as written; absolute when it starts with `crate`, `self`, `super` (any
    /// number) or a child module of the current one. Other paths (std, a dependency, a local
    /// name) are not modules of this crate.
    fn add(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let mut at = match first.as_str() {
            "crate" | "$crate" => Vec::new(),
            "self" | "super" => self.here.clone(),
            _ => {
                let mut child = self.here.clone();
                child.push(first.clone());
                if self.mods.contains_key(&child) {
                    let mut p = self.here.clone();
                    p.extend(segments.iter().cloned());
                    self.out.push(p);
                }
                return;
            }
        };
        let mut rest = if first == "super" {
            segments
        } else {
            &segments[1..]
        };
        while rest.first().is_some_and(|s| s == "super") {
            if at.pop().is_none() {
                return; // above the crate root: not ours
            }
            rest = &rest[1..];
        }
        at.extend(rest.iter().filter(|s| *s != "self").cloned());
        self.out.push(at);
    }

    /// Every leaf of a use tree, with the prefix that leads to it.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.add(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.add(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.add(&prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Macro arguments are tokens, not syntax: find `crate :: a :: b` (and `self`, `super`,
    /// `$crate`) runs in them. Literals (strings) are single tokens, and comments are gone.
    fn tokens(&mut self, ts: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                TokenTree::Group(g) => {
                    self.tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(id) => {
                    let dollar =
                        i > 0 && matches!(&toks[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                    let name = id.to_string();
                    let starts = matches!(name.as_str(), "crate" | "self" | "super");
                    let after_colons =
                        i >= 2 && matches!(&toks[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                    let mut path = vec![if dollar && name == "crate" {
                        "$crate".to_string()
                    } else {
                        name
                    }];
                    let mut j = i + 1;
                    // `:: ident` after it, as often as it comes.
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (toks.get(j), toks.get(j + 1), toks.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        path.push(next.to_string());
                        j += 3;
                    }
                    if starts && !after_colons && path.len() > 1 {
                        self.add(&path);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    /// `#[serde(with = "crate::a::b")]` and its kin name functions in strings: code, not
    /// prose. Doc comments and other attributes' strings are not.
    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        fn strings(ts: proc_macro2::TokenStream, out: &mut Vec<String>) {
            for t in ts {
                match t {
                    proc_macro2::TokenTree::Group(g) => strings(g.stream(), out),
                    proc_macro2::TokenTree::Literal(l) => {
                        if let Ok(s) = syn::parse_str::<syn::LitStr>(&l.to_string()) {
                            out.push(s.value());
                        }
                    }
                    _ => {}
                }
            }
        }
        if !a.path().is_ident("serde") {
            return;
        }
        if let syn::Meta::List(list) = &a.meta {
            let mut found = Vec::new();
            strings(list.tokens.clone(), &mut found);
            for s in found {
                if let Ok(p) = syn::parse_str::<syn::Path>(&s) {
                    let segs: Vec<String> =
                        p.segments.iter().map(|s| s.ident.to_string()).collect();
                    self.add(&segs);
                }
            }
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.add(&segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // `mod x { ... }` inline: its `super` is this module. `mod x;` is a file of its own.
        if m.content.is_some() {
            self.here.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.here.pop();
        }
    }
}

/// The module paths `text` (the file of module `own`) refers to, absolute.
fn references(text: &str, own: &[String], mods: &BTreeMap<Module, PathBuf>) -> Vec<Module> {
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", own.join("::")));
    let mut r = Refs {
        here: own.to_vec(),
        mods,
        out: Vec::new(),
    };
    r.visit_file(&file);
    r.out
}

/// The longest module path that is a prefix of `path`.
fn resolve(path: &[String], mods: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

/// Which module uses which, for the tree under `src`.
fn graph_of(src: &Path) -> Graph {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).expect("read source");
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let deps: BTreeSet<Module> = references(&text, m, &mods)
            .iter()
            .filter_map(|p| resolve(p, &mods))
            // A folder's mod.rs declares and re-exports its children: not a dependency.
            .filter(|d| d != m && !(is_mod_rs && d.starts_with(m)))
            .collect();
        g.insert(m.clone(), deps);
    }
    g
}

fn crate_graph() -> Graph {
    graph_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// "a::b uses c::d" for every use across layers that lib.rs does not allow.
fn layer_breaches(g: &Graph) -> Vec<String> {
    let allowed = allowed();
    let mut bad = Vec::new();
    for (m, deps) in g {
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
    bad
}

/// Every set of modules that depend on each other (Tarjan's strongly connected components of
/// more than one module), each as "a <-> b <-> c".
fn cycles(g: &Graph) -> Vec<String> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        next: usize,
        sccs: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
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
        g,
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
    t.sccs.iter().map(|c| c.join(" <-> ")).collect()
}

#[test]
fn layers_depend_one_way() {
    let bad = layer_breaches(&crate_graph());
    assert!(
        bad.is_empty(),
        "layer rule broken (see lib.rs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_module_cycles() {
    let found = cycles(&crate_graph());
    assert!(
        found.is_empty(),
        "modules that depend on each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_graph_sees_known_edges_of_the_real_tree() {
    // A few edges the source has, each written a different way, so a parser that drops
    // one form fails here on the real tree, not only on the planted one.
    let g = crate_graph();
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    for (from, to) in [
        // `use super::ledger::Ledger;`
        ("accounting::share", "accounting::ledger"),
        // `use crate::sensors::{Covers, Method, ...}` (a group)
        ("accounting::ledger", "sensors"),
        // `crate::util::sanitize::terminal(..)` in an expression
        ("accounting::share", "util::sanitize"),
    ] {
        assert!(
            g.get(&m(from)).is_some_and(|d| d.contains(&m(to))),
            "{from} -> {to} missing: {:?}",
            g.get(&m(from))
        );
    }
}

/// Write `files` (path under src, text) into a fresh tree.
fn plant(files: &[(&str, &str)]) -> (tempfile::TempDir, Graph) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let g = graph_of(dir.path());
    (dir, g)
}

#[test]
fn the_checker_finds_planted_cycles_and_layer_breaches_in_every_form() {
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    // A clean tree first: both checks pass on it, and comments, strings, doc links and
    // other crates' paths are not edges.
    let clean: &[(&str, &str)] = &[
        ("sensors/mod.rs", "pub mod a;\npub mod b;\npub mod deep;\n"),
        (
            "sensors/a.rs",
            "//! See [`crate::dashboard::App`].\n\
             // use crate::dashboard::App;\n\
             /* crate::commands::run() */\n\
             pub fn f() -> &'static str { \"crate::dashboard::x\" }\n\
             pub fn g() { let _ = std::path::Path::new(\"/\"); }\n",
        ),
        ("sensors/b.rs", "use super::a::f;\n"),
        ("sensors/deep/mod.rs", "pub mod c;\n"),
        ("sensors/deep/c.rs", "pub struct C;\n"),
        ("dashboard/mod.rs", "use crate::sensors::a;\n"),
        ("commands/mod.rs", ""),
        ("util/mod.rs", "pub mod u;\n"),
        ("util/u.rs", "pub struct U;\n"),
    ];
    let (_d, g) = plant(clean);
    assert_eq!(g[&m("sensors::a")], BTreeSet::new(), "{g:?}");
    assert_eq!(g[&m("sensors::b")], BTreeSet::from([m("sensors::a")]));
    assert!(cycles(&g).is_empty(), "{:?}", cycles(&g));
    assert!(layer_breaches(&g).is_empty(), "{:?}", layer_breaches(&g));

    // Each form of reference, planted: the edge it makes.
    let forms: &[(&str, &str, &str)] = &[
        // A grouped import: both branches count.
        (
            "use crate::{util::u::U, dashboard::D};",
            "sensors::deep::c",
            "dashboard",
        ),
        // `super::super::` from sensors/deep/c.rs is `sensors`, then `a`.
        ("use super::super::a::f;", "sensors::deep::c", "sensors::a"),
        // `self::` from a mod.rs is its own folder.
        (
            "pub use self::c::C;\nuse crate::commands::X;",
            "sensors::deep",
            "commands",
        ),
        // A path in an expression.
        (
            "pub fn g() { crate::dashboard::draw(); }",
            "sensors::deep::c",
            "dashboard",
        ),
        // A path in a macro's arguments.
        (
            "pub fn g() { println!(\"{}\", crate::dashboard::name()); }",
            "sensors::deep::c",
            "dashboard",
        ),
        // `super` inside an inline module is the file's module: from `mod tests` in
        // sensors/deep/c.rs the crate root is four up.
        (
            "mod tests { use super::super::super::super::commands::Y; }",
            "sensors::deep::c",
            "commands",
        ),
        // A serde attribute naming a function in a string.
        (
            "#[derive(serde::Deserialize)]\npub struct S { #[serde(deserialize_with = \"crate::dashboard::de\")] pub x: f64 }",
            "sensors::deep::c",
            "dashboard",
        ),
    ];
    for (code, from, to) in forms {
        let mut files: Vec<(&str, &str)> = clean.to_vec();
        let path = if *from == "sensors::deep" {
            "sensors/deep/mod.rs"
        } else {
            "sensors/deep/c.rs"
        };
        let text = if *from == "sensors::deep" {
            format!("pub mod c;\n{code}\n")
        } else {
            format!("pub struct C;\n{code}\n")
        };
        files.retain(|(p, _)| *p != path);
        files.push((path, &text));
        let (_d, g) = plant(&files);
        assert!(
            g[&m(from)].contains(&m(to)),
            "{code}: {from} -> {to} not seen: {:?}",
            g[&m(from)]
        );
    }

    // A cycle round three modules and a breach, both found by the checks themselves.
    let mut files: Vec<(&str, &str)> = clean.to_vec();
    files.retain(|(p, _)| !p.starts_with("sensors/b.rs") && !p.starts_with("sensors/deep/c"));
    files.push(("sensors/b.rs", "use super::deep::c::C;\n"));
    files.push((
        "sensors/deep/c.rs",
        "pub struct C;\nuse crate::{sensors::a, commands::D};\n",
    ));
    files.retain(|(p, _)| *p != "sensors/a.rs");
    files.push(("sensors/a.rs", "pub fn f() { super::b::g(); }\n"));
    let (_d, g) = plant(&files);
    assert_eq!(
        cycles(&g),
        ["sensors::a <-> sensors::b <-> sensors::deep::c"],
        "{g:?}"
    );
    assert_eq!(
        layer_breaches(&g),
        ["sensors::deep::c uses commands"],
        "{g:?}"
    );
}
