//! Label and field selectors: parsing (with kube-apiserver's error wording)
//! and matching against stored objects.
//!
//! Pure functions over `object::Stored` (kube's storage.SelectionPredicate),
//! checking keys and values with `apimachinery`'s validation; used by
//! `registry::generic` for LIST and by `watch` for filtering and for the
//! ADDED/DELETED transitions of selector watches.

use serde_json::Value;

use crate::{
    apimachinery::{
        errors::ApiError,
        validation::{label_value_errors, qualified_name_errors},
    },
    storage::object::Stored,
};

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// The string form of a `metav1.LabelSelector` object (`matchLabels` and
/// `matchExpressions`), requirements sorted, as kube's `FormatLabelSelector`
/// writes it: `app=web,tier in (a,b)`. `None` for an unknown operator.
pub fn format_label_selector(selector: &Value) -> Option<String> {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => return None,
        });
    }
    parts.sort();
    Some(parts.join(","))
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3`.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        let mut lexer = Lexer::new(input);
        if lexer.peek_is_end() {
            return Ok(LabelSelector(reqs));
        }
        loop {
            reqs.push(parse_requirement(&mut lexer)?);
            match lexer.next() {
                Tok::End => break,
                Tok::Comma => continue,
                other => {
                    return Err(parse_error(&format!(
                        "found '{}', expected: ',' or 'end of string'",
                        other.text()
                    )))
                }
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &dyn Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|req| match req {
            Req::Exists(k) => labels(k).is_some(),
            Req::NotExists(k) => labels(k).is_none(),
            Req::In(k, vs) => labels(k).is_some_and(|v| vs.contains(&v)),
            Req::NotIn(k, vs) => labels(k).is_none_or(|v| !vs.contains(&v)),
            Req::Gt(k, n) => labels(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Req::Lt(k, n) => labels(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }

    /// Whether a stored object matches.
    pub fn matches_stored(&self, obj: &Stored) -> bool {
        self.is_empty() || self.matches(&|k| obj.label(k).map(str::to_string))
    }
}

fn parse_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {detail}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Comma,
    Eq,
    DoubleEq,
    NotEq,
    Not,
    Gt,
    Lt,
    In,
    NotIn,
    Open,
    Close,
    End,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Comma => ",".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::NotEq => "!=".into(),
            Tok::Not => "!".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::End => "end of string".into(),
        }
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    peeked: Option<Tok>,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Lexer {
            chars: input.chars().peekable(),
            peeked: None,
        }
    }

    fn peek_is_end(&mut self) -> bool {
        let tok = self.next();
        let end = tok == Tok::End;
        self.peeked = Some(tok);
        end
    }

    fn peek(&mut self) -> &Tok {
        if self.peeked.is_none() {
            let tok = self.lex();
            self.peeked = Some(tok);
        }
        self.peeked.as_ref().unwrap_or(&Tok::End)
    }

    fn next(&mut self) -> Tok {
        match self.peeked.take() {
            Some(tok) => tok,
            None => self.lex(),
        }
    }

    fn lex(&mut self) -> Tok {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
        let Some(c) = self.chars.next() else {
            return Tok::End;
        };
        match c {
            ',' => Tok::Comma,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '>' => Tok::Gt,
            '<' => Tok::Lt,
            '=' => {
                if self.chars.peek() == Some(&'=') {
                    self.chars.next();
                    Tok::DoubleEq
                } else {
                    Tok::Eq
                }
            }
            '!' => {
                if self.chars.peek() == Some(&'=') {
                    self.chars.next();
                    Tok::NotEq
                } else {
                    Tok::Not
                }
            }
            _ => {
                let mut word = String::from(c);
                while let Some(&c) = self.chars.peek() {
                    if c.is_whitespace() || ",()=!<>".contains(c) {
                        break;
                    }
                    word.push(c);
                    self.chars.next();
                }
                match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                }
            }
        }
    }
}

fn parse_requirement(lexer: &mut Lexer<'_>) -> Result<Req, ApiError> {
    let negated = if *lexer.peek() == Tok::Not {
        lexer.next();
        true
    } else {
        false
    };
    let key = match lexer.next() {
        Tok::Ident(k) => k,
        other => {
            return Err(parse_error(&format!(
                "found '{}', expected: identifier",
                other.text()
            )))
        }
    };
    check_key(&key)?;
    if negated {
        return Ok(Req::NotExists(key));
    }
    match lexer.peek().clone() {
        Tok::Comma | Tok::End => return Ok(Req::Exists(key)),
        _ => {}
    }
    let op = lexer.next();
    match op {
        Tok::Eq | Tok::DoubleEq | Tok::NotEq => {
            let value = match lexer.peek().clone() {
                Tok::Ident(v) => {
                    lexer.next();
                    v
                }
                Tok::Comma | Tok::End => String::new(),
                other => {
                    return Err(parse_error(&format!(
                        "found '{}', expected: identifier",
                        other.text()
                    )))
                }
            };
            check_value(&value)?;
            Ok(if op == Tok::NotEq {
                Req::NotIn(key, vec![value])
            } else {
                Req::In(key, vec![value])
            })
        }
        Tok::In | Tok::NotIn => {
            if lexer.next() != Tok::Open {
                return Err(parse_error("found '', expected: '('"));
            }
            let mut values = Vec::new();
            loop {
                match lexer.next() {
                    Tok::Ident(v) => {
                        check_value(&v)?;
                        values.push(v);
                        match lexer.next() {
                            Tok::Comma => continue,
                            Tok::Close => break,
                            other => {
                                return Err(parse_error(&format!(
                                    "found '{}', expected: ',' or ')'",
                                    other.text()
                                )))
                            }
                        }
                    }
                    Tok::Close if values.is_empty() => break,
                    Tok::Comma => values.push(String::new()),
                    other => {
                        return Err(parse_error(&format!(
                            "found '{}', expected: ',', ')' or identifier",
                            other.text()
                        )))
                    }
                }
            }
            if values.is_empty() {
                return Err(parse_error(&format!(
                    "for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                )));
            }
            Ok(if op == Tok::In {
                Req::In(key, values)
            } else {
                Req::NotIn(key, values)
            })
        }
        Tok::Gt | Tok::Lt => {
            let value = match lexer.next() {
                Tok::Ident(v) => v,
                other => {
                    return Err(parse_error(&format!(
                        "found '{}', expected: identifier",
                        other.text()
                    )))
                }
            };
            let n: i64 = value.parse().map_err(|_| {
                parse_error(&format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {value:?}"
                ))
            })?;
            Ok(if op == Tok::Gt {
                Req::Gt(key, n)
            } else {
                Req::Lt(key, n)
            })
        }
        other => Err(parse_error(&format!(
            "found '{}', expected: in, notin, =, ==, !=, gt, lt",
            other.text()
        ))),
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    let problems = qualified_name_errors(key);
    match problems.first() {
        None => Ok(()),
        Some(p) => Err(parse_error(&format!("key: Invalid value: {key:?}: {p}"))),
    }
}

fn check_value(value: &str) -> Result<(), ApiError> {
    match label_value_errors(value).first() {
        None => Ok(()),
        Some(p) => Err(parse_error(&format!(
            "values[0]: Invalid value: {value:?}: {p}"
        ))),
    }
}

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldReq {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldReq>);

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`, accepting only the
    /// fields in `supported` (plus `metadata.name` and `metadata.namespace`).
    pub fn parse(input: &str, supported: &[&str]) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_unescaped(input, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported.contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldReq {
                field: field.to_string(),
                value: unescape(value.trim()),
                equal,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name this selector pins with `metadata.name=`, if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equal && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }

    /// Whether a stored object matches.
    pub fn matches_stored(&self, obj: &Stored) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut parsed: Option<Value> = None;
        self.0.iter().all(|req| {
            let actual = match req.field.as_str() {
                "metadata.name" => obj.name().to_string(),
                "metadata.namespace" => obj.namespace().to_string(),
                path => {
                    let value = parsed.get_or_insert_with(|| obj.value());
                    field_value(value, path)
                }
            };
            (actual == req.value) == req.equal
        })
    }
}

/// The string form of a field for field selectors ("" when absent).
fn field_value(value: &Value, path: &str) -> String {
    let mut cur = value;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(sel: &str, l: &HashMap<String, String>) -> bool {
        LabelSelector::parse(sel)
            .unwrap()
            .matches(&|k| l.get(k).cloned())
    }

    #[test]
    fn label_selector_should_support_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        assert!(check("", &l));
        assert!(check("app=web", &l));
        assert!(check("app==web", &l));
        assert!(!check("app!=web", &l));
        assert!(check("missing!=x", &l));
        assert!(check("app in (web, api)", &l));
        assert!(!check("app notin (web)", &l));
        assert!(check("missing notin (web)", &l));
        assert!(check("tier", &l));
        assert!(!check("!tier", &l));
        assert!(check("!missing", &l));
        assert!(check("app=web, tier in (front)", &l));
        assert!(check("n>3,n<6", &l));
        assert!(!check("n>5", &l));
        assert!(check("example.com/x notin (a)", &l));
    }

    #[test]
    fn label_selector_should_reject_garbage_with_bad_request() {
        for bad in [
            "app=",
            "app in web",
            "=x",
            "app in ()",
            "a b",
            "app=web,",
            "-bad=x",
            "a>x",
        ] {
            if bad == "app=" {
                // An empty value is valid: `app=` selects app == "".
                assert!(LabelSelector::parse(bad).is_ok());
                continue;
            }
            let err = LabelSelector::parse(bad).unwrap_err();
            assert_eq!(err.code, 400, "{bad}: {err}");
            assert!(
                err.message.starts_with("unable to parse requirement"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn field_selector_should_only_accept_supported_fields() {
        let sel = FieldSelector::parse("metadata.name=a,metadata.namespace!=b", &[]).unwrap();
        assert_eq!(sel.exact_name(), Some("a"));
        let err = FieldSelector::parse("spec.foo=a", &[]).unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.foo");
        assert!(FieldSelector::parse("type=Opaque", &["type"]).is_ok());
        assert_eq!(FieldSelector::parse("nonsense", &[]).unwrap_err().code, 400);
    }

    #[test]
    fn field_value_should_stringify_scalars() {
        let v = serde_json::json!({"spec": {"unschedulable": true, "n": 3}});
        assert_eq!(field_value(&v, "spec.unschedulable"), "true");
        assert_eq!(field_value(&v, "spec.n"), "3");
        assert_eq!(field_value(&v, "spec.none"), "");
    }
}
