//! Resource quantities (`500m`, `1.5`, `128Mi`, `1G`, `1e3`) as numbers,
//! for the scheduler's arithmetic: CPU in millicores, everything else in
//! units (bytes, pods).

use std::collections::BTreeMap;

use serde_json::Value;

/// A quantity's value in thousandths (so `500m` is 500 and `2` is 2000);
/// `None` when it is not a quantity.
pub(crate) fn milli(q: &Value) -> Option<i128> {
    let text = match q {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .or_else(|| {
            // `1e3` is a number; a trailing `E` alone is the exa suffix.
            text.ends_with(['E']).then(|| text.len() - 1)
        })
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    let value = number * factor * 1000.0;
    (0.0..1e36).contains(&value).then(|| value.ceil() as i128)
}

/// A pod's requests (the larger of the containers' sum and any init
/// container's), by resource name, in thousandths.
pub(crate) fn pod_requests(pod: &Value) -> BTreeMap<String, i128> {
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    let read = |c: &Value| -> BTreeMap<String, i128> {
        let r = &c["resources"];
        let from = if r["requests"].is_object() {
            &r["requests"]
        } else {
            &r["limits"]
        };
        from.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| milli(v).map(|m| (k.clone(), m)))
            .collect()
    };
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (k, v) in read(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (k, v) in read(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_should_read_like_kubes() {
        assert_eq!(milli(&json!("500m")), Some(500));
        assert_eq!(milli(&json!("2")), Some(2000));
        assert_eq!(milli(&json!(1)), Some(1000));
        assert_eq!(milli(&json!("0.5")), Some(500));
        assert_eq!(milli(&json!("128Mi")), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(milli(&json!("1G")), Some(1_000_000_000_000));
        assert_eq!(milli(&json!("1e3")), Some(1_000_000));
        assert_eq!(milli(&json!("lots")), None);
        assert_eq!(milli(&json!("-1")), None);
    }
}
