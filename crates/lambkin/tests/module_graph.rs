//! The host crate's modules depend on each other one way only: no module reaches (through
//! `crate::…` or `super::…` paths, in `use` lines or inline) a module that reaches it back.
//! The check reads the source, as anyone can with `cargo test --test module_graph`; it prints
//! every circle it finds with the paths that tie it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file's module path: `src/lib.rs` is the root, `src/a/mod.rs` and `src/a.rs` are `a`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path that starts at `crate` or `super` in `code`, as its segments (a `{…}` group
/// gives one path per member, by its first segment).
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let word = |at: usize| -> (String, usize) {
        let end = code[at..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(code.len(), |n| at + n);
        (code[at..end].to_owned(), end)
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let start_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let head = ["crate::", "super::"]
            .into_iter()
            .find(|h| start_ok && code[at..].starts_with(h));
        let Some(head) = head else {
            at += code[at..].chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let mut segments = vec![head.trim_end_matches("::").to_owned()];
        let mut pos = at + head.len();
        loop {
            if code[pos..].starts_with("super::") {
                segments.push("super".into());
                pos += "super::".len();
                continue;
            }
            if code[pos..].starts_with('{') {
                let close = code[pos..].find('}').map_or(code.len(), |n| pos + n);
                for member in code[pos + 1..close].split(',') {
                    let member = member.trim();
                    let first: String = member
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !first.is_empty() {
                        let mut path = segments.clone();
                        path.push(first);
                        found.push(path);
                    }
                }
                pos = close;
                segments.clear();
                break;
            }
            let (name, end) = word(pos);
            if name.is_empty() {
                break;
            }
            segments.push(name);
            pos = end;
            if code[pos..].starts_with("::") {
                pos += 2;
            } else {
                break;
            }
        }
        if !segments.is_empty() {
            found.push(segments);
        }
        at = pos.max(at + 1);
    }
    found
}

/// The module a path names (its longest prefix that is a module of the crate), from `here`.
fn target(
    here: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("super") => {
            base = here.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = None;
    let mut candidate = base;
    if modules.contains(&candidate) {
        best = Some(candidate.clone());
    }
    for segment in rest {
        candidate.push(segment.clone());
        if modules.contains(&candidate) {
            best = Some(candidate.clone());
        }
    }
    best
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn graph_of(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let here = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let edges = graph.entry(here.clone()).or_default();
        for path in paths(&code(&text)) {
            if let Some(to) = target(&here, &path, &modules) {
                // A module's own parents (their `mod` lines and re-exports) are not edges.
                if to != here && !here.starts_with(&to) {
                    edges.insert(to);
                }
            }
        }
    }
    graph
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    let found = circles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|circle| {
            let members: BTreeSet<&Vec<String>> = circle.iter().collect();
            let ties: Vec<String> = circle
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| members.contains(to))
                        .map(move |to| format!("{} -> {}", name(from), name(to)))
                })
                .collect();
            ties.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles:\n  {}",
        described.join("\n  ")
    );
}

#[test]
fn the_check_sees_a_circle_when_there_is_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\nuse crate::b::Thing;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::super::b::{self, Other};\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "// crate::a is only named in a comment\nfn f() { crate::a::x::g(); }\n",
    )
    .unwrap();
    let graph = graph_of(src);
    let names = |m: &str| m.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert!(graph[&names("a")].contains(&names("b")));
    assert!(graph[&names("a::x")].contains(&names("b")));
    assert!(graph[&names("b")].contains(&names("a::x")));
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let members: BTreeSet<String> = found[0].iter().map(|m| name(m)).collect();
    assert_eq!(members, BTreeSet::from(["a::x".to_owned(), "b".to_owned()]));
}
