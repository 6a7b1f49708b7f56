//! The framework's layering contracts, checked like Kopf's `.importlinter`:
//! a module may use only modules of lower layers (or of its own layer when
//! allowed); engines are independent of each other; the progress and
//! diff-base storages stay independent; nothing in `src/` uses test-only code.

use std::{collections::BTreeSet, fs, path::Path};

/// Layers from the bottom up; modules in one layer may not use each other
/// unless listed in `SAME_LAYER_OK`.
const LAYERS: &[&[&str]] = &[
    &["structs", "references", "stopping", "indices", "forbidden"],
    &["storage"],
    &["handling"],
    &["observing"],
    &["settings"],
    &["registry"],
    &[
        "hierarchies",
        "posting",
        "activities",
        "daemons",
        "indexing",
        "probing",
        "peering",
        "admission",
        "scanning",
        "networking",
    ],
    &["processing"],
    &["reactor"],
    &["orchestrating"],
    &["operator"],
    &["formatting"],
    &["cli"],
];

/// Pairs (user, used) allowed within a layer.
const SAME_LAYER_OK: &[(&str, &str)] = &[("references", "structs")];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The crate modules a source file refers to (`crate::x`, `use crate::{x, ...}`).
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A use-group: names at the group's top level.
            let mut depth = 1;
            let mut name = String::new();
            let mut expecting_name = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expecting_name = true,
                    c if depth == 1 && expecting_name && (c.is_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ if depth == 1 && !name.is_empty() => {
                        used.insert(std::mem::take(&mut name));
                        expecting_name = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                used.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

/// Every source file as (module, code): a file `src/x.rs` is module `x`,
/// and every file under a folder `src/x/` is module `x` too; only the code
/// outside `#[cfg(test)]` modules counts.
fn sources() -> Vec<(String, String)> {
    files()
        .into_iter()
        .map(|(module, _, text)| {
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (module, code)
        })
        .collect()
}

/// Every `.rs` file under `src/`: its module, its path and its text.
fn files() -> Vec<(String, std::path::PathBuf, String)> {
    fn walk(dir: &Path, module: Option<&str>, out: &mut Vec<(String, std::path::PathBuf, String)>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                walk(&path, Some(module.unwrap_or(&stem)), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module.unwrap_or(&stem).to_string();
                out.push((module, path.clone(), fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        None,
        &mut out,
    );
    out
}

/// No source file grows past about 800 lines: split it by what it does.
#[test]
fn files_should_stay_under_800_lines() {
    for (_, path, text) in files() {
        let lines = text.lines().count();
        assert!(lines <= 800, "{} has {lines} lines", path.display());
    }
}

/// Lower layers never use higher ones.
#[test]
fn modules_should_only_use_lower_layers() {
    let mut violations = Vec::new();
    for (module, code) in sources() {
        let Some(mine) = layer_of(&module) else {
            assert!(module == "lib", "module {module} has no layer in LAYERS");
            continue;
        };
        for used in used_modules(&code) {
            let Some(theirs) = layer_of(&used) else {
                continue;
            };
            let same_ok = SAME_LAYER_OK.contains(&(module.as_str(), used.as_str()));
            if theirs > mine || (theirs == mine && used != module && !same_ok) {
                violations.push(format!(
                    "layers: {module} (layer {mine}) uses {used} (layer {theirs})"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Engines are independent of each other.
#[test]
fn engines_should_be_independent() {
    let engines = LAYERS[layer_of("posting").expect("posting has a layer")];
    for (module, code) in sources() {
        if engines.contains(&module.as_str()) {
            for used in used_modules(&code) {
                assert!(
                    !engines.contains(&used.as_str()) || used == module,
                    "engines: {module} uses {used}"
                );
            }
        }
    }
}

/// The progress storage and the diff-base storage do not call each other's
/// writers: the diff-base only asks progress to clear its traces.
#[test]
fn storages_should_stay_independent() {
    let storage = sources()
        .into_iter()
        .find(|(m, _)| m == "storage")
        .unwrap()
        .1;
    let diffbase = &storage[storage.find("impl DiffBaseStorage").unwrap()..];
    let diffbase = &diffbase[..diffbase.find("#[cfg(test)]").unwrap_or(diffbase.len())];
    for writer in ["progress.store(", "progress.purge(", ".fetch(body, id)"] {
        assert!(
            !diffbase.contains(writer),
            "the diff-base storage uses the progress storage's {writer}"
        );
    }
}

/// Nothing meant for tests is used by the library code.
#[test]
fn core_should_not_use_test_code() {
    for (module, code) in sources() {
        for forbidden in ["fake_apiserver", "kopf_harness", "tokio::time::pause"] {
            assert!(!code.contains(forbidden), "{module} uses {forbidden}");
        }
    }
}

/// The use-parser sees grouped and inline paths.
#[test]
fn the_parser_should_see_grouped_and_inline_uses() {
    let used = used_modules("use crate::{\n    handling::{A, B},\n    structs::Patch,\n};\nfn f() { crate::storage::x(); }");
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["handling", "storage", "structs"]
    );
}
