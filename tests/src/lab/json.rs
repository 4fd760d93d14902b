//! The one-object-per-line output of `holepunch --json`, read with serde_json and offered as a
//! small owned tree ([`Json`]) whose accessors the lab tests use.

use std::collections::BTreeMap;

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, keys sorted.
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.get(key),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The string member `key` of an object.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Json::as_str)
    }
}

/// Parses one JSON text (surrounding whitespace allowed).
///
/// # Errors
/// Where and why the text is not JSON.
pub fn parse_json(text: &str) -> Result<Json, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(Json::from)
        .map_err(|e| e.to_string())
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        use serde_json::Value;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            // Every JSON number has an f64 (serde_json's default build has no arbitrary
            // precision); NaN only if that ever changes.
            Value::Number(n) => Json::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Json::String(s),
            Value::Array(a) => Json::Array(a.into_iter().map(Json::from).collect()),
            Value::Object(m) => Json::Object(m.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_netcheck_like_report() {
        let v = parse_json(
            r#"{"event":"report","udp":true,"public_v4":"203.0.113.100:4000","public_v6":null,
               "mapping":"endpoint-independent","hairpinning":null,"rtt_ms":1.5,
               "portmap":{"upnp":false,"natpmp":false,"pcp":false},"list":[1,"a\"b"]}"#,
        )
        .expect("valid");
        assert_eq!(v.str_field("event"), Some("report"));
        assert_eq!(v.get("udp").and_then(Json::as_bool), Some(true));
        assert!(v.get("public_v6").is_some_and(Json::is_null));
        assert_eq!(v.get("rtt_ms").and_then(Json::as_f64), Some(1.5));
        assert_eq!(
            v.get("portmap").and_then(|p| p.get("pcp")),
            Some(&Json::Bool(false))
        );
        assert_eq!(
            v.get("list"),
            Some(&Json::Array(vec![
                Json::Number(1.0),
                Json::String("a\"b".into())
            ]))
        );
        assert!(parse_json("{\"a\":1} x").is_err());
        assert!(parse_json("{\"a\":}").is_err());
    }
}
