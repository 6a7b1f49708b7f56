//! Loading objects from YAML or JSON files and strings (`--load`): CRDs
//! first, `kind: List` expanded, each object created or replaced.

use std::path::Path;

use serde_json::Value;

use crate::{
    apimachinery::errors::ApiError,
    registry::{
        rest::Target,
        semantics::{meta_str, Endpoint},
    },
    server::{FakeApiServer, LoadError},
};

impl FakeApiServer {
    /// Applies objects from a multi-document YAML or JSON string (CRDs
    /// first; `kind: List` expanded): created, or replaced when they exist.
    /// Returns `Kind namespace/name` for each object.
    pub fn load_str(&self, text: &str, origin: &str) -> Result<Vec<String>, LoadError> {
        let mut objects = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).map_err(|e| LoadError::Parse {
                    origin: origin.into(),
                    index: i + 1,
                    message: e.to_string(),
                })?;
            if value.is_null() {
                continue;
            }
            let value: Value = serde_json::to_value(value).map_err(|e| LoadError::Parse {
                origin: origin.into(),
                index: i + 1,
                message: e.to_string(),
            })?;
            match value.get("items").and_then(Value::as_array) {
                Some(items)
                    if value
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List")) =>
                {
                    objects.extend(items.iter().cloned())
                }
                _ => objects.push(value),
            }
        }
        objects.sort_by_key(|o| {
            o.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
        });
        objects.iter().map(|o| self.apply(o, origin)).collect()
    }

    /// Applies every `.yaml`, `.yml` and `.json` file at `path` (a file, or a
    /// directory read in name order), CRDs of all files first.
    pub fn load_path(&self, path: &Path) -> Result<Vec<String>, LoadError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| LoadError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let mut files = Vec::new();
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut text = String::new();
        for f in &files {
            text.push_str(&read(f)?);
            text.push_str("\n---\n");
        }
        self.load_str(&text, &path.display().to_string())
    }

    fn apply(&self, obj: &Value, origin: &str) -> Result<String, LoadError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind_name = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let refused = |what: String, source: ApiError| LoadError::Refused {
            origin: origin.into(),
            what,
            source: Box::new(source),
        };
        let Some((kind, version)) = self.shared.api.resources.by_kind(api_version, kind_name)
        else {
            return Err(refused(
                format!("{kind_name} {name}"),
                ApiError::not_found(
                    "",
                    "",
                    &format!("no kind {kind_name:?} is served in {api_version:?}"),
                ),
            ));
        };
        let namespace = if kind.namespaced {
            meta_str(obj, "namespace")
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let what = if namespace.is_empty() {
            format!("{kind_name} {name}")
        } else {
            format!("{kind_name} {namespace}/{name}")
        };
        let t = Target {
            kind,
            version,
            namespace,
            name: String::new(),
        };
        match self.shared.api.create(&t, obj.clone(), false) {
            Ok(_) => Ok(what),
            Err(e) if e.reason == "AlreadyExists" => {
                let t = Target {
                    name: name.clone(),
                    ..t
                };
                let mut obj = obj.clone();
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                self.shared
                    .api
                    .update(&t, obj, Endpoint::Main, false)
                    .map(|_| what.clone())
                    .map_err(|e| refused(what, e))
            }
            Err(e) => Err(refused(what, e)),
        }
    }
}
