//! YAML request bodies, decoded with a bound on nesting that is checked
//! before the parser runs: YAML parsers spend time quadratic in the depth
//! of flow collections (`[[[[...`), so a 3 MiB body of brackets could keep
//! a core busy for a minute. Deeper than [`MAX_DEPTH`] is refused at once.

use serde_json::Value;

/// The deepest nesting of collections a YAML body may have (go-yaml, which
/// kube-apiserver uses, stops at 10,000; decoding into objects stops far
/// earlier anyway, at 128 levels, as for JSON bodies).
pub const MAX_DEPTH: usize = 1000;

/// Decodes one YAML document into JSON.
///
/// # Errors
/// A message when the body nests deeper than [`MAX_DEPTH`] or is not YAML.
pub fn from_slice(body: &[u8]) -> Result<Value, String> {
    check_depth(body)?;
    serde_yaml::from_slice(body).map_err(|e| e.to_string())
}

/// Refuses bodies whose flow collections (`[`, `{`) or block indentation
/// nest deeper than [`MAX_DEPTH`], in one linear pass: brackets inside
/// quoted scalars and comments do not count.
///
/// # Errors
/// go-yaml's message, with this limit, when too deep.
pub fn check_depth(body: &[u8]) -> Result<(), String> {
    let too_deep = || format!("yaml: exceeded max depth of {MAX_DEPTH}");
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut line_start = true;
    let mut indent = 0usize;
    let mut previous = b'\n';
    for &c in body {
        if line_start {
            if c == b' ' || c == b'-' {
                // Block nesting shows as indentation (and `- ` items).
                indent += 1;
                if indent / 2 > MAX_DEPTH {
                    return Err(too_deep());
                }
            } else {
                line_start = false;
            }
        }
        match (quote, c) {
            (_, b'\n') => {
                comment = false;
                line_start = true;
                indent = 0;
                // A plain or double-quoted scalar may span lines; a single
                // quote too: keep the quote state.
            }
            _ if comment => {}
            // `\"` inside double quotes escapes the quote; `''` inside
            // single quotes closes and reopens, which counts the same.
            (Some(q), _) if c == q && !(q == b'"' && previous == b'\\') => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'#') if previous.is_ascii_whitespace() => comment = true,
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = if previous == b'\\' && c == b'\\' {
            0
        } else {
            c
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_documents_should_decode() {
        let v = from_slice(b"a: [1, {b: \"[[[\"}]\n# {{{{\nc:\n  d: '[[['\n").unwrap();
        assert_eq!(v["a"][1]["b"], "[[[");
        assert_eq!(v["c"]["d"], "[[[");
    }

    /// Regression test for issue 15: 100k nested flow levels are refused
    /// before the parser sees them.
    #[test]
    fn deep_flow_nesting_should_be_refused_at_once() {
        let body = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(
            from_slice(body.as_bytes()).unwrap_err(),
            "yaml: exceeded max depth of 1000"
        );
        let body = "a: ".to_string() + &"{b: ".repeat(2000) + "1" + &"}".repeat(2000);
        assert!(from_slice(body.as_bytes()).is_err());
    }

    #[test]
    fn deep_block_nesting_should_be_refused() {
        let mut body = String::new();
        for level in 0..1100 {
            body.push_str(&" ".repeat(level * 2));
            body.push_str("a:\n");
        }
        assert_eq!(
            from_slice(body.as_bytes()).unwrap_err(),
            "yaml: exceeded max depth of 1000"
        );
    }

    #[test]
    fn brackets_in_quotes_and_comments_should_not_count() {
        let body = format!(
            "a: \"{}\"\nb: '{}'\n# {}\n",
            "[".repeat(5000),
            "{".repeat(5000),
            "[".repeat(5000)
        );
        assert!(from_slice(body.as_bytes()).is_ok());
    }
}
