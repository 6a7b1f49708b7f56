//! The fake API server's layering contracts, checked like Kopf's
//! `.importlinter`: a folder of `src/` uses only folders of lower layers;
//! folders of one layer (peers) never use each other; `testing` serves only
//! `endpoints` and `server`; `storage` knows nothing of Kubernetes' rules;
//! controllers reach the registry only through `registry::rest`; the files
//! of a folder do not use each other in a circle; no file grows past 800
//! lines.
//!
//! A folder's module is the first component of a file's path under `src/`
//! (`registry/generic/create.rs` belongs to `registry`); what a file uses is
//! every `crate::` path in its code outside `#[cfg(test)] mod tests`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Folders from the bottom up; a folder may use only folders of lower
/// layers, and never a peer of its own layer.
const LAYERS: &[&[&str]] = &[
    &["apimachinery"],
    &["storage"],
    &["registry"],
    &["auth"],
    &["controllers", "admission", "testing"],
    &["endpoints"],
    &["server"],
];

/// The longest a source file may be.
const MAX_LINES: usize = 800;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One source file under `src/`.
struct Source {
    /// Its path under `src/`, with `/` separators.
    path: String,
    /// The folder (or root file) it belongs to: the path's first component.
    module: String,
    /// Its code, without the `#[cfg(test)] mod tests` block.
    code: String,
}

impl Source {
    fn new(path: &str, text: &str) -> Self {
        let first = path.split('/').next().unwrap_or_default();
        let module = first.strip_suffix(".rs").unwrap_or(first).to_string();
        // Only the code outside `#[cfg(test)]` modules counts.
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => text[..i].to_string(),
            None => text.to_string(),
        };
        Source {
            path: path.to_string(),
            module,
            code,
        }
    }

    /// The components of its path, `.rs` stripped from the last.
    fn components(&self) -> Vec<String> {
        self.path
            .split('/')
            .map(|c| c.strip_suffix(".rs").unwrap_or(c).to_string())
            .collect()
    }
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (path under `src/`, text).
fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(src_dir())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The library's sources (not `lib.rs`, not `bin/`, not `tests.rs` files).
fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    files
        .iter()
        .filter(|(path, _)| {
            path != "lib.rs" && !path.starts_with("bin/") && !path.ends_with("/tests.rs")
        })
        .map(|(path, text)| Source::new(path, text))
        .collect()
}

/// Every `crate::` path in `text`, use-groups expanded:
/// `use crate::{a::{b, c::D}, e};` gives `a::b`, `a::c::D` and `e`.
fn used_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        tree(&mut rest.chars().peekable(), Vec::new(), &mut out);
    }
    out
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_whitespace(chars: &mut Chars<'_>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn identifier(chars: &mut Chars<'_>) -> String {
    let mut name = String::new();
    while let Some(c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
        name.push(*c);
        chars.next();
    }
    name
}

/// Reads one use-tree after a `::`: a path (`a::b::C`, `a::b as c`,
/// `a::*`), or a `{...}` group of trees.
fn tree(chars: &mut Chars<'_>, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        skip_whitespace(chars);
        match chars.peek() {
            Some('{') => {
                chars.next();
                loop {
                    skip_whitespace(chars);
                    if chars.peek() == Some(&'}') {
                        chars.next();
                        return;
                    }
                    tree(chars, prefix.clone(), out);
                    skip_whitespace(chars);
                    match chars.next() {
                        Some(',') => continue,
                        _ => return,
                    }
                }
            }
            Some(c) if c.is_alphanumeric() || *c == '_' => {
                prefix.push(identifier(chars));
                let mut ahead = chars.clone();
                if ahead.next() == Some(':') && ahead.next() == Some(':') {
                    chars.next();
                    chars.next();
                    continue;
                }
                // `as alias`: the alias is no path.
                let mut ahead = chars.clone();
                skip_whitespace(&mut ahead);
                if identifier(&mut ahead) == "as" {
                    skip_whitespace(&mut ahead);
                    identifier(&mut ahead);
                    *chars = ahead;
                }
                out.push(prefix);
                return;
            }
            Some('*') => {
                chars.next();
                out.push(prefix);
                return;
            }
            _ => {
                // A turbofish, or the end.
                if !prefix.is_empty() {
                    out.push(prefix);
                }
                return;
            }
        }
    }
}

/// The folders (first path components) `code` uses.
fn used_modules(code: &str) -> BTreeSet<String> {
    used_paths(code)
        .into_iter()
        .filter_map(|p| p.into_iter().next())
        .collect()
}

/// A folder using a higher layer, a peer, or a name that is no folder (a
/// root re-export or an old flat-layout path).
fn layer_violations(sources: &[Source]) -> Vec<String> {
    let mut violations = Vec::new();
    for s in sources {
        let Some(mine) = layer_of(&s.module) else {
            violations.push(format!(
                "{}: folder {} has no layer in LAYERS",
                s.path, s.module
            ));
            continue;
        };
        for used in used_modules(&s.code) {
            match layer_of(&used) {
                None => violations.push(format!(
                    "{}: crate::{used} is no folder (use the canonical path)",
                    s.path
                )),
                Some(theirs) if theirs > mine => violations.push(format!(
                    "{}: {} (layer {mine}) uses {used} (layer {theirs})",
                    s.path, s.module
                )),
                Some(theirs) if theirs == mine && used != s.module => violations.push(format!(
                    "{}: {} uses its peer {used} (layer {theirs})",
                    s.path, s.module
                )),
                Some(_) => {}
            }
        }
    }
    violations
}

/// Users of `used` other than `allowed`.
fn users_outside(sources: &[Source], used: &str, allowed: &[&str]) -> Vec<String> {
    sources
        .iter()
        .filter(|s| s.module != used && !allowed.contains(&s.module.as_str()))
        .filter(|s| used_modules(&s.code).contains(used))
        .map(|s| format!("{}: {} uses {used}", s.path, s.module))
        .collect()
}

/// Files naming `registry::generic` (the `Api` behind `rest`'s traits) that
/// are neither in it nor above the controllers' layer.
fn generic_violations(sources: &[Source]) -> Vec<String> {
    let mut violations = Vec::new();
    for s in sources {
        let inside = s.path.starts_with("registry/generic/");
        let above = ["testing", "endpoints", "server"].contains(&s.module.as_str());
        if inside || above {
            continue;
        }
        for path in used_paths(&s.code) {
            if path.len() > 1 && path[0] == "registry" && path[1] == "generic" {
                violations.push(format!("{}: uses crate::{}", s.path, path.join("::")));
            }
        }
    }
    violations
}

/// Circles among the files (and subfolders) of one folder, through
/// `crate::folder::file` paths. Items of a folder's `mod.rs` are not files.
fn circles(sources: &[Source]) -> Vec<String> {
    // folder -> node -> nodes it uses
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let comps = s.components();
        for depth in 1..comps.len() {
            children
                .entry(comps[..depth].to_vec())
                .or_default()
                .insert(comps[depth].clone());
        }
    }
    for s in sources {
        let comps = s.components();
        let paths = used_paths(&s.code);
        for depth in 1..comps.len() {
            let folder = comps[..depth].to_vec();
            let node = comps[depth].clone();
            let kids = &children[&folder];
            let graph = graphs.entry(folder.clone()).or_default();
            graph.entry(node.clone()).or_default();
            for p in &paths {
                if p.len() > depth && p[..depth] == folder[..] {
                    let target = &p[depth];
                    if target != &node && target != "mod" && kids.contains(target) {
                        graph.get_mut(&node).unwrap().insert(target.clone());
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for (folder, graph) in &graphs {
        // Depth-first search; a node met again on the current path closes a circle.
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<Vec<String>>,
        ) {
            if let Some(i) = path.iter().position(|n| n == node) {
                let mut circle = path[i..].to_vec();
                circle.push(node.to_string());
                found.push(circle);
                return;
            }
            if !done.insert(node.to_string()) {
                return;
            }
            path.push(node.to_string());
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done, found);
            }
            path.pop();
        }
        let mut circles = Vec::new();
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, graph, &mut Vec::new(), &mut done, &mut circles);
        }
        for c in circles {
            found.push(format!("{}/: {}", folder.join("/"), c.join(" -> ")));
        }
    }
    found
}

/// Lower layers never use higher ones, and every `crate::` path starts
/// with a folder (no root re-exports, no old flat-layout paths).
#[test]
fn folders_should_only_use_lower_layers() {
    let violations = layer_violations(&sources());
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Peers (folders of one layer) never use each other.
#[test]
fn peers_should_be_independent() {
    let sources = sources();
    for layer in LAYERS {
        for module in *layer {
            let peers: Vec<&str> = layer.iter().copied().filter(|p| p != module).collect();
            for s in sources.iter().filter(|s| s.module == *module) {
                for used in used_modules(&s.code) {
                    assert!(
                        !peers.contains(&used.as_str()),
                        "{}: {module} uses its peer {used}",
                        s.path
                    );
                }
            }
        }
    }
}

/// Only `endpoints` and `server` use `testing` (injection, faults, journal).
#[test]
fn testing_should_be_used_only_by_endpoints_and_server() {
    let violations = users_outside(&sources(), "testing", &["endpoints", "server"]);
    assert!(violations.is_empty(), "{violations:#?}");
}

/// `storage` uses nothing above `apimachinery`.
#[test]
fn storage_should_use_only_apimachinery() {
    for s in sources().iter().filter(|s| s.module == "storage") {
        for used in used_modules(&s.code) {
            assert!(
                used == "storage" || used == "apimachinery",
                "{}: storage uses {used}",
                s.path
            );
        }
    }
}

/// Controllers, admission and the rest of the registry never name
/// `registry::generic`: they see the `Api` only through `registry::rest`.
#[test]
fn only_the_layers_above_should_name_the_generic_registry() {
    let violations = generic_violations(&sources());
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The files of a folder do not use each other in a circle.
#[test]
fn files_in_a_folder_should_not_use_each_other_in_a_circle() {
    let found = circles(&sources());
    assert!(found.is_empty(), "{found:#?}");
}

/// Paths leaving a folder say `crate::`, never `super::super`.
#[test]
fn no_file_should_climb_with_super_super() {
    for s in sources() {
        assert!(
            !s.code.contains("super::super"),
            "{}: uses super::super",
            s.path
        );
    }
}

/// No source file (the binary's included) exceeds 800 lines.
#[test]
fn no_source_file_should_exceed_800_lines() {
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(path, n)| format!("{path}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}

/// The parser sees grouped, nested, aliased and inline paths.
#[test]
fn the_parser_should_see_grouped_and_inline_paths() {
    let paths = used_paths(
        "use crate::{\n    storage::{object::{Change, Stored}, store::Store as S},\n    registry::rest::Target,\n};\nfn f() { crate::apimachinery::errors::ApiError::internal(\"x\"); }",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "storage::object::Change",
            "storage::object::Stored",
            "storage::store::Store",
            "registry::rest::Target",
            "apimachinery::errors::ApiError::internal",
        ]
    );
    assert_eq!(
        used_modules("use crate::{endpoints::{self, ApiService}, testing::*};")
            .into_iter()
            .collect::<Vec<_>>(),
        ["endpoints", "testing"]
    );
}

/// Each check reports a violation planted in made-up sources.
#[test]
fn the_checks_should_catch_planted_violations() {
    let planted = [
        // storage reaching up into the registry
        Source::new("storage/store.rs", "use crate::registry::resources::Kind;"),
        // a peer using a peer
        Source::new(
            "admission/webhooks.rs",
            "use crate::{testing::faults::FaultRule};",
        ),
        // an old flat-layout path
        Source::new("controllers/gc.rs", "use crate::api::Api;"),
        // the controllers naming the generic registry
        Source::new(
            "controllers/x.rs",
            "use crate::registry::{generic::Api, rest::Target};",
        ),
        // a circle inside a folder
        Source::new("endpoints/a.rs", "use crate::endpoints::b::B;"),
        Source::new("endpoints/b.rs", "fn f() { crate::endpoints::a::g(); }"),
        // test code does not count
        Source::new(
            "apimachinery/x.rs",
            "#[cfg(test)]\nmod tests { use crate::server::Builder; }",
        ),
    ];
    let layers = layer_violations(&planted);
    assert_eq!(layers.len(), 3, "{layers:#?}");
    assert!(layers[0].contains("storage (layer 1) uses registry (layer 2)"));
    assert!(layers[1].contains("admission uses its peer testing"));
    assert!(layers[2].contains("crate::api is no folder"));
    assert_eq!(
        users_outside(&planted, "testing", &["endpoints", "server"]),
        ["admission/webhooks.rs: admission uses testing"]
    );
    assert_eq!(
        generic_violations(&planted),
        ["controllers/x.rs: uses crate::registry::generic::Api"]
    );
    assert_eq!(circles(&planted), ["endpoints/: a -> b -> a"]);
}
