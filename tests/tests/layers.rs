//! The library's layers only look down: a module may use modules of its own layer or of the
//! layers below it, never one above. The table below is the only statement of the layering
//! (docs/architecture.md shows it); this test reads every source file of `actix-cluster/src`
//! and fails on any `crate::` path (in a `use` or inline, comments excluded) that reaches up.
//!
//! A path to an item the crate root re-exports (`crate::ClusterSystem`) counts as reaching the
//! root, the top layer: inside the library, import an item from the module that defines it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers, bottom first. A module path matches its longest listed prefix.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: identities, limits, frames, payload formats, TLS material, metric names, tables
    // that take registrations until the node starts.
    (
        "leaf",
        &[
            "node",
            "limits",
            "wire",
            "codec",
            "tls",
            "metrics",
            "registrations",
        ],
    ),
    // Connections, queues, the channel table, request/reply correlation.
    ("transport", &["transport"]),
    // Who is in the cluster; failure detection.
    ("membership", &["membership"]),
    // Where actors go: strategies as pure functions of the member table (spawning by
    // strategy, which builds on the registry and the remote layer, is in `system`).
    ("placement", &["placement"]),
    // Addresses, sending, dispatch to local actors, system requests (actor 0), watches.
    ("remote", &["remote"]),
    // Cluster-wide names on Raft.
    ("registry", &["registry"]),
    // Stores of actor state that outlives an activation (fenced by registry versions, which
    // its callers pass in: it needs nothing above the leaves).
    ("state", &["state"]),
    // The public handle and its configuration.
    ("system", &["system", "config"]),
    // The crate root: re-exports and the prelude.
    ("root", &[""]),
];

fn layer_of(module: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (index, (name, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in *prefixes {
            let parts: Vec<&str> = prefix.split("::").filter(|p| !p.is_empty()).collect();
            let matches = parts.len() <= module.len()
                && parts.iter().zip(module).all(|(p, m)| *p == m.as_str());
            if matches && best.is_none_or(|(len, _, _)| parts.len() > len) {
                best = Some((parts.len(), index, name));
            }
        }
    }
    best.map(|(_, index, name)| (index, name))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read source dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `remote/addr.rs` → `remote::addr`, `lib.rs` → root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// Source without comments (line and block), string literals kept as they are.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let bytes = src.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == b'"' && !(i > 0 && bytes[i - 1] == b'\'') {
            in_str = true;
        }
        out.push(c as char);
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment after each `crate::` in `code`, with `crate::{a, b::c}` groups
/// expanded to `a` and `b`.
fn crate_targets(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':' || c == '$') {
            continue; // `$crate::`, `some_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && c == ',' {
                    out.extend(first_segment(&item));
                    item.clear();
                } else {
                    item.push(c);
                }
            }
            out.extend(first_segment(&item));
        } else {
            out.extend(first_segment(rest));
        }
    }
    out
}

fn first_segment(s: &str) -> Option<String> {
    let s = s.trim_start();
    let seg: String = s.chars().take_while(|c| is_ident(*c)).collect();
    (!seg.is_empty() && seg != "self").then_some(seg)
}

/// Every upward import in the library, as `file: uses crate::x (layer) from layer`.
fn upward_imports(src_dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src_dir, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let top_modules: Vec<String> = files
        .iter()
        .filter_map(|f| module_of(f.strip_prefix(src_dir).ok()?).first().cloned())
        .collect();
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(src_dir).expect("under src");
        let module = module_of(rel);
        let (from, from_name) = layer_of(&module)
            .unwrap_or_else(|| panic!("{} is in no layer of the table", rel.display()));
        let code = strip_comments(&std::fs::read_to_string(file).expect("read source"));
        for target in crate_targets(&code) {
            let path = if top_modules.contains(&target) {
                vec![target.clone()]
            } else {
                // An item of the crate root (a re-export): the root layer.
                Vec::new()
            };
            let (to, to_name) = layer_of(&path).expect("the root layer matches everything");
            if to > from {
                violations.push(format!(
                    "{}: uses crate::{target} (layer {to_name}) from layer {from_name}",
                    rel.display()
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../actix-cluster/src")
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let violations = upward_imports(&src_dir());
    assert!(
        violations.is_empty(),
        "imports that reach up the layer table (tests/tests/layers.rs):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    sources(&src_dir(), &mut files);
    let mut by_layer: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in &files {
        let module = module_of(f.strip_prefix(src_dir()).expect("under src"));
        let name = module.first().cloned().unwrap_or_default();
        let (_, layer) = layer_of(&module).expect("the root layer matches everything");
        // Only the crate root itself may fall through to the root layer.
        assert!(
            layer != "root" || module.is_empty(),
            "module {name} is in no layer of the table; add it to LAYERS"
        );
        by_layer.entry(layer).or_default().push(name);
    }
    assert!(by_layer.len() >= 6, "layers seen: {by_layer:?}");
}

#[test]
fn the_checker_sees_upward_imports() {
    // The parsing itself, on snippets: grouped imports, inline paths, comments ignored.
    assert_eq!(
        crate_targets("use crate::{codec::X, node, transport::{a, b}};"),
        ["codec", "node", "transport"]
    );
    assert_eq!(crate_targets("let x = crate::registry::f();"), ["registry"]);
    assert!(crate_targets(&strip_comments("// see crate::system\n/* crate::x */")).is_empty());
    assert!(crate_targets("$crate::x; other_crate::y").is_empty());
    assert_eq!(
        layer_of(&["remote".to_owned(), "addr".to_owned()]).map(|l| l.1),
        Some("remote")
    );
    assert_eq!(layer_of(&[]).map(|l| l.1), Some("root"));
}
