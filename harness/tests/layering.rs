//! The harness's layering contract: a module uses only modules below it,
//! so the cluster backends never reach up to the outcome or the runner.

use std::{collections::BTreeSet, fs, path::Path};

/// Modules from the bottom up; a module may use only modules of lower
/// layers (`lib` holds the errors and re-exports, and is above all).
const LAYERS: &[&[&str]] = &[
    &["rbac"],
    &["error", "records"],
    &["remote"],
    &["cluster"],
    &["outcome", "process"],
    &["runner"],
    &["scenario"],
    &["strategies"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The crate modules `code` names (`crate::x`, `use crate::{x, y::z}`).
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if depth == 1 && start && !c.is_whitespace() => {
                        used.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

/// Each `src/*.rs` but lib.rs, as (module, code outside test modules).
fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let module = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "rs") && module != "lib" {
            let text = fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((module, code));
        }
    }
    out
}

/// Lower modules never use higher ones (no circles among the modules).
#[test]
fn modules_should_only_use_lower_layers() {
    let mut violations = Vec::new();
    for (module, code) in sources() {
        let mine = layer_of(&module).unwrap_or_else(|| panic!("{module} has no layer"));
        for used in used_modules(&code) {
            if let Some(theirs) = layer_of(&used) {
                if theirs >= mine && used != module {
                    violations.push(format!(
                        "{module} (layer {mine}) uses {used} (layer {theirs})"
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The parser sees grouped, nested and inline paths, so the check can fail.
#[test]
fn the_parser_should_see_grouped_and_inline_uses() {
    let used = used_modules(
        "use crate::{\n    records::WriteRecord,\n    remote::{A, b::C},\n    HarnessError,\n};\nfn f() { crate::cluster::EPOCH; }",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["HarnessError", "cluster", "records", "remote"]
    );
}
