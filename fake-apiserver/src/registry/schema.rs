//! Structural schemas of custom resources (a CRD version's
//! `openAPIV3Schema`), applied as kube-apiserver applies them on every
//! write: unknown fields pruned (reported, for `fieldValidation`), `null`
//! dropped where not `nullable`, `default`s filled in, then validation of
//! types, `required`, `enum`, bounds, `pattern`, lengths and sizes, with
//! every failure as a cause with its field path.
//!
//! Pure functions over JSON; `apiVersion`, `kind` and `metadata` at the root
//! (and in embedded resources) are the API server's business, not the
//! schema's.

use serde_json::Value;

use crate::apimachinery::errors::Cause;

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether the node keeps fields its schema does not name.
fn preserves(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-preserve-unknown-fields")
}

/// Drops fields the schema does not know, and `null`s where not nullable;
/// returns the dropped paths (for `fieldValidation=Warn|Strict`).
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    prune_at(obj, schema, "", true, &mut dropped);
    dropped
}

fn prune_at(v: &mut Value, schema: &Value, path: &str, root: bool, dropped: &mut Vec<String>) {
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keep_unknown =
                preserves(schema) || additional.is_some_and(|a| a.as_bool() == Some(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let field = join(path, &key);
                let sub = props
                    .and_then(|p| p.get(&key))
                    .or_else(|| additional.filter(|a| a.is_object()));
                match sub {
                    Some(sub) => {
                        let value = map.get_mut(&key).expect("a key of this map");
                        if value.is_null() && !flag(sub, "nullable") {
                            map.remove(&key);
                            continue;
                        }
                        prune_at(value, sub, &field, false, dropped);
                    }
                    None if keep_unknown => {}
                    None => {
                        map.remove(&key);
                        dropped.push(field);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, value) in items.iter_mut().enumerate() {
                    prune_at(value, item, &format!("{path}[{i}]"), false, dropped);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the `default`s of absent fields (after pruning).
pub fn default(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    match map.get_mut(key) {
                        Some(value) => default(value, sub),
                        None => {
                            if let Some(d) = sub.get("default") {
                                let mut d = d.clone();
                                default(&mut d, sub);
                                map.insert(key.clone(), d);
                            }
                        }
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let named: Vec<String> = map.keys().cloned().collect();
                for key in named {
                    let known = schema.get("properties").and_then(|p| p.get(&key)).is_some();
                    if !known {
                        if let Some(v) = map.get_mut(&key) {
                            default(v, additional);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for v in items {
                    default(v, item);
                }
            }
        }
        _ => {}
    }
}

/// Validates against the schema; every failure, with its path.
pub fn validate(obj: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_at(obj, schema, "", true, &mut causes);
    causes
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as kube-apiserver quotes it in messages.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn invalid(field: &str, v: &Value, detail: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {detail}", shown(v)),
        field: field.into(),
    }
}

fn type_ok(v: &Value, wanted: &str, schema: &Value) -> bool {
    if flag(schema, "x-kubernetes-int-or-string") {
        return matches!(type_name(v), "integer" | "string");
    }
    match (wanted, type_name(v)) {
        ("number", "integer" | "number") => true,
        (w, actual) => w == actual,
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn validate_at(v: &Value, schema: &Value, path: &str, root: bool, causes: &mut Vec<Cause>) {
    let field = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if !flag(schema, "nullable") && !root {
            if let Some(t) = schema.get("type").and_then(Value::as_str) {
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body must be of type {t}: \"null\""),
                ));
            }
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") && !matches!(type_name(v), "integer" | "string") {
        causes.push(invalid(
            field,
            v,
            format!(
                "{field} in body must be of type integer,string: \"{}\"",
                type_name(v)
            ),
        ));
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_ok(v, t, schema) {
            causes.push(invalid(
                field,
                v,
                format!("{field} in body must be of type {t}: \"{}\"", type_name(v)),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let supported: Vec<String> = options.iter().map(shown).collect();
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(v),
                    supported.join(", ")
                ),
                field: field.into(),
            });
        }
    }
    if let Some(n) = number(v).filter(|_| v.is_number()) {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should be {op} {}", schema["minimum"]),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should be {op} {}", schema["maximum"]),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let chars = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if chars > max {
                causes.push(Cause {
                    reason: "FieldValueTooLong".into(),
                    message: format!("Too long: may not be more than {max} bytes"),
                    field: field.into(),
                });
            }
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if chars < min {
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should be at least {min} chars long"),
                ));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should match '{pattern}'"),
                )),
                _ => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                causes.push(Cause {
                    reason: "FieldValueTooMany".into(),
                    message: format!("Too many: {n}: must have at most {max} items"),
                    field: field.into(),
                });
            }
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if n < min {
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should have at least {min} items"),
                ));
            }
        }
        if let Some(item) = schema.get("items") {
            for (i, value) in items.iter().enumerate() {
                validate_at(value, item, &format!("{path}[{i}]"), false, causes);
            }
        }
    }
    if let Some(map) = v.as_object() {
        let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(required) {
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: join(path, required),
                });
            }
        }
        let n = map.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
            if n > max {
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should have at most {max} properties"),
                ));
            }
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if n < min {
                causes.push(invalid(
                    field,
                    v,
                    format!("{field} in body should have at least {min} properties"),
                ));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, value) in map {
            if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let sub = props.and_then(|p| p.get(key)).or(additional);
            if let Some(sub) = sub {
                validate_at(value, sub, &join(path, key), false, causes);
            }
        }
        if flag(schema, "x-kubernetes-embedded-resource") {
            for needed in ["apiVersion", "kind"] {
                if map
                    .get(needed)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: must not be empty".into(),
                        field: join(path, needed),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "note": {"type": "string", "nullable": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object"}}},
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        }})
    }

    #[test]
    fn unknown_fields_should_be_pruned_except_where_preserved() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "anything": 1},
            "spec": {"name": "ab", "unknown": 1, "note": null, "replicas": null,
                     "extra": {"free": {"form": true}}, "labels": {"a": "b"},
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "junk": 1}},
            "status": {"phase": "Ready", "surprise": true},
            "top": 1});
        let dropped = prune(&mut obj, &schema());
        assert_eq!(
            dropped,
            [
                "spec.template.junk",
                "spec.unknown",
                "status.surprise",
                "top"
            ]
        );
        assert!(
            obj["spec"].get("replicas").is_none(),
            "null dropped where not nullable"
        );
        assert!(obj["spec"]["note"].is_null(), "kept where nullable");
        assert_eq!(obj["spec"]["extra"], json!({"free": {"form": true}}));
        assert_eq!(
            obj["metadata"]["anything"], 1,
            "metadata is not the schema's"
        );
        assert_eq!(obj["spec"]["template"]["metadata"], json!({"name": "p"}));
    }

    #[test]
    fn defaults_should_fill_absent_fields() {
        let mut obj = json!({"spec": {"name": "ab", "mode": "fast"}});
        default(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["mode"], "fast", "given values stay");
    }

    #[test]
    fn validation_should_report_every_cause_with_its_path() {
        let obj = json!({"spec": {"name": "ABCDEFG", "replicas": 0, "mode": "medium",
                                  "port": true, "tags": ["a", "b", 3], "labels": {"x": 1}},
                         "status": {"phase": 5}});
        let causes = validate(&obj, &schema());
        let got: Vec<(String, String, String)> = causes
            .iter()
            .map(|c| (c.field.clone(), c.reason.clone(), c.message.clone()))
            .collect();
        let field = |f: &str| {
            got.iter()
                .filter(|(p, ..)| p == f)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(field("spec.name").len(), 2, "{got:#?}");
        assert!(field("spec.name")[0].2.starts_with("Too long"));
        assert_eq!(
            field("spec.name")[1].2,
            "Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
        );
        assert_eq!(
            field("spec.replicas")[0].2,
            "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
        );
        assert_eq!(
            field("spec.mode")[0].2,
            "Unsupported value: \"medium\": supported values: \"fast\", \"slow\""
        );
        assert_eq!(field("spec.port")[0].1, "FieldValueInvalid");
        assert_eq!(field("spec.tags")[0].1, "FieldValueTooMany");
        assert_eq!(
            field("spec.tags[2]")[0].2,
            "Invalid value: 3: spec.tags[2] in body must be of type string: \"integer\""
        );
        assert_eq!(field("spec.labels.x").len(), 1);
        assert_eq!(field("status.phase").len(), 1);
        let missing = validate(&json!({"spec": {}}), &schema());
        assert_eq!(missing[0].field, "spec.name");
        assert_eq!(missing[0].reason, "FieldValueRequired");
        assert!(validate(&json!({"spec": {"name": "ok", "port": "http"}}), &schema()).is_empty());
        assert!(validate(&json!({"spec": {"name": "ok", "port": 80}}), &schema()).is_empty());
    }
}
