//! Human output: aligned tables and key/value blocks; `--json` prints the answer as JSON (the
//! server's wire type, re-serialized: the same fields, checked on the way in).

use serde_json::Value;

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A JSON scalar as table text (`-` for null).
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(","),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints an object as `name: value` lines, nested objects flattened with dots.
pub(crate) fn fields(v: &Value) {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if !map.is_empty() && !prefix.ends_with("tags") && !prefix.ends_with("context") => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), cell(other))),
    }
}

/// Prints `v` as pretty JSON.
pub(crate) fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("values serialize"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_render_scalars_maps_and_nulls() {
        assert_eq!(cell(&serde_json::json!(null)), "-");
        assert_eq!(cell(&serde_json::json!({"a": "1", "b": 2})), "a=1,b=2");
        assert_eq!(cell(&serde_json::json!([1, "x"])), "1,x");
        let mut rows = Vec::new();
        flatten("", &serde_json::json!({"key_metadata": {"key_id": "k", "tags": {"a": "b"}}}), &mut rows);
        assert_eq!(rows, vec![("key_metadata.key_id".into(), "k".into()), ("key_metadata.tags".into(), "a=b".into())]);
    }
}
