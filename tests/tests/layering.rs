//! The module graph of jobs-core, read from its sources: every arrow points down.
//!
//! Each module's `crate::…` paths (in `use` items and inline) are edges to the modules they
//! name. The test fails on an import circle (the harmless `error` ↔ `job` pair aside), on a
//! storage or model module that imports from the layers above it, and on a source file over
//! the size at which it should have been split.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Modules below the scheduler, the worker, the API, the runner and the testing mode: they
/// must name none of those.
const LOWER: [&str; 6] = ["backend", "schedule", "job", "options", "stats", "time"];
const UPPER: [&str; 6] = ["scheduler", "worker", "api", "runner", "service", "testing"];
/// The one circle allowed: `Error` names `JobId`, `JobId` parsing returns `Error`.
const ALLOWED_CIRCLE: [&str; 2] = ["error", "job"];
/// Lines past which a jobs-core source file has more than one concern.
const MAX_LINES: usize = 650;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs-core/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `backend/redis/mod.rs` → `backend::redis`; `lib.rs` → ``.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> =
        rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The source without `//` comments and without its `#[cfg(test)] mod tests { … }` tail.
fn code(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    src.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every path the source of module `module` names after `crate::` or `super::` (made
/// absolute), with `use crate::{a, b::{c, d}}` groups expanded: `["a"], ["b", "c"], ["b", "d"]`.
fn crate_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let parent: Vec<String> = match module.rsplit_once("::") {
        Some((p, _)) => p.split("::").map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (marker, prefix) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(i) = rest.find(marker) {
            let after = &rest[i + marker.len()..];
            // `$crate::` in macros and `jobs_core::`-style names ending in `crate` or
            // `super` are not paths of this crate.
            let before = rest[..i].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                expand(&prefix, after, &mut out);
            }
            rest = after;
        }
    }
    out
}

/// Reads one path (or brace group) at the start of `s`, prefixed by `prefix`.
fn expand(prefix: &[String], s: &str, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(body) = s.strip_prefix('{') {
        let mut depth = 0usize;
        let mut start = 0;
        for (i, ch) in body.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(prefix, &body[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &body[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut path = prefix.to_vec();
    let mut s = s;
    loop {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
        if end == 0 {
            break;
        }
        path.push(s[..end].to_owned());
        s = &s[end..];
        match s.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                expand(&path, next, out);
                return;
            }
            Some(next) => s = next,
            None => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

fn graph() -> (Graph, Vec<(String, usize)>) {
    let root = src_dir();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 20, "found only {} files under {}", files.len(), root.display());
    let mut sources = BTreeMap::new();
    let mut sizes = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        let src = std::fs::read_to_string(f).unwrap_or_default();
        sizes.push((rel.display().to_string(), src.lines().count()));
        sources.insert(module_of(rel), src);
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut g = Graph::new();
    for (m, src) in &sources {
        let mut targets = BTreeSet::new();
        for path in crate_paths(m, &code(src)) {
            // The longest prefix of the path that is a module.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|cand| modules.contains(cand));
            if let Some(t) = target
                && &t != m
                && !m.starts_with(&format!("{t}::"))
            {
                targets.insert(t);
            }
        }
        g.insert(m.clone(), targets);
    }
    (g, sizes)
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_parser_reads_groups_and_inline_paths() {
    let src = "use crate::{a, b::{c, d::E}};\nlet x = crate::f::g(1);\nuse super::h;";
    let paths = crate_paths("api::jobs", src);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["a", "b::c", "b::d::E", "f::g", "api::h"]);
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut g = Graph::new();
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("w", "x")] {
        g.entry(a.to_owned()).or_default().insert(b.to_owned());
    }
    g.entry("w".into()).or_default();
    assert_eq!(circles(&g), vec![vec!["x".to_owned(), "y".into(), "z".into()]]);
}

#[test]
fn jobs_core_has_no_import_circle() {
    let (g, _) = graph();
    let found: Vec<_> = circles(&g)
        .into_iter()
        .filter(|c| c.iter().map(String::as_str).collect::<Vec<_>>() != ALLOWED_CIRCLE)
        .collect();
    assert!(found.is_empty(), "import circles among jobs-core's modules: {found:?}");
}

#[test]
fn lower_layers_import_nothing_from_the_upper_ones() {
    let (g, _) = graph();
    let mut wrong = Vec::new();
    for (m, targets) in &g {
        if !LOWER.contains(&top(m)) {
            continue;
        }
        for t in targets {
            if UPPER.contains(&top(t)) {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "arrows pointing up: {wrong:?}");
}

#[test]
fn no_source_file_holds_several_concerns() {
    let (_, sizes) = graph();
    let big: Vec<_> = sizes.into_iter().filter(|(_, n)| *n > MAX_LINES).collect();
    assert!(big.is_empty(), "files over {MAX_LINES} lines: {big:?}");
}
