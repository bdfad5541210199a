//! The layers test (ARCHITECTURE.md): imports point down only, `api → flow → {store, server} →
//! core`, `error` from anywhere. It reads the source tree, so a new file is held to the rule the
//! moment it exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).expect("under src/");
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            out.push((relative.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

/// The code of a file without its comments (`//`, `///`, `//!` to the end of the line), so that
/// prose naming a layer is not an import.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths below `crate::` that `code` names, each as `module` or `module::item…` (a grouped
/// `crate::{a, b::c}` names `a` and `b::c`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut item = String::new();
            let mut depth = 0;
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        paths.push(item.split_whitespace().collect::<String>());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.trim_end_matches(':').to_string());
        }
    }
    paths.retain(|p| !p.is_empty());
    paths
}

/// The top folder of a file (`lib.rs` and the files beside it are their own).
fn layer(file: &str) -> &str {
    file.split_once('/').map_or(file, |(top, _)| top)
}

/// What each layer may not name.
fn forbidden(layer: &str) -> &'static [&'static str] {
    match layer {
        "flow" => &["api"],
        "store" => &["api", "flow", "server"],
        "server" => &["api", "flow", "store"],
        "core" => &["api", "flow", "store", "server"],
        "lib.rs" | "api" => &[],
        _ => &["api"],
    }
}

/// Every breach of the rule in `files` (path relative to `src/`, text), one line each.
fn breaches(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    // Within flow/, which file names which (for the DAG check).
    let mut flow_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in files {
        let code = code(text);
        let layer = layer(file);
        for path in crate_paths(&code) {
            let top = path.split("::").next().unwrap_or_default();
            if forbidden(layer).contains(&top) {
                found.push(format!(
                    "{file}: names crate::{path} ({layer} may not name {top})"
                ));
            }
            // api/ is a leaf: one api file never names another.
            if layer == "api" && top == "api" {
                found.push(format!(
                    "{file}: names crate::{path} (api/ files import no api/ file)"
                ));
            }
            if layer == "flow" && top == "flow" {
                if let Some(target) = path.split("::").nth(1) {
                    let source = file.trim_start_matches("flow/").trim_end_matches(".rs");
                    if target != source && target != "mod" {
                        flow_edges
                            .entry(source.to_string())
                            .or_default()
                            .insert(target.to_string());
                    }
                }
            }
        }
        if layer == "core" && code.contains("pgrx") {
            found.push(format!("{file}: names pgrx (core/ is pure Rust)"));
        }
        if layer != "api" && layer != "lib.rs" && layer != "pg_tests" {
            for attribute in ["#[pg_extern", "#[pg_trigger"] {
                if code.contains(attribute) {
                    found.push(format!("{file}: {attribute}] outside api/"));
                }
            }
        }
    }
    // flow/ files form a DAG: no file reaches itself.
    for start in flow_edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = flow_edges[start].iter().collect();
        while let Some(next) = stack.pop() {
            if next == start {
                found.push(format!(
                    "flow/{start}.rs: an import circle through flow/ reaches it again"
                ));
                break;
            }
            if seen.insert(next.clone()) {
                stack.extend(flow_edges.get(next).into_iter().flatten());
            }
        }
    }
    found
}

#[test]
fn imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    // This file's own examples are breaches on purpose.
    files.retain(|(f, _)| f != "layers.rs");
    assert!(
        files.iter().any(|(f, _)| f == "flow/token.rs"),
        "the tree was read"
    );
    let found = breaches(&files);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_each_kind_of_breach() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = vec![
        file(
            "store/a.rs",
            "use crate::server::ledger;\nuse crate::{core, flow::member};",
        ),
        file("server/b.rs", "let x = crate::store::spi::clock();"),
        file("core/c.rs", "use pgrx::prelude::*;"),
        file("flow/d.rs", "use crate::api::login;\nuse crate::flow::e;"),
        file("flow/e.rs", "use crate::flow::d;"),
        file(
            "api/f.rs",
            "use crate::api::g; // crate::store is fine in prose",
        ),
        file(
            "store/ok.rs",
            "// crate::server named in a comment only\nuse crate::core::ids;",
        ),
    ];
    let found = breaches(&files);
    for expected in [
        "store/a.rs: names crate::server::ledger",
        "store/a.rs: names crate::flow::member",
        "server/b.rs: names crate::store::spi::clock",
        "core/c.rs: names pgrx",
        "flow/d.rs: names crate::api::login",
        "flow/d.rs: an import circle",
        "api/f.rs: names crate::api::g",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "{expected}: {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|f| f.starts_with("store/ok.rs")),
        "{found:#?}"
    );
}
