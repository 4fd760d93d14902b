//! One-line JSON objects for `--json` output, without a serialization crate.
//!
//! Every line is an object whose first field is `"event"`. Values are strings (addresses,
//! reasons), numbers, booleans, `null` and lists of strings: all this CLI ever prints.

use std::fmt::{Display, Write as _};

/// A JSON object being built, one field at a time.
#[derive(Debug, Clone)]
pub struct Event {
    buf: String,
}

impl Event {
    /// Starts `{"event":"<name>"`.
    pub fn new(name: &str) -> Self {
        let mut buf = String::from("{\"event\":");
        push_str(&mut buf, name);
        Event { buf }
    }

    /// Adds a string field (anything displayable, escaped).
    pub fn str(mut self, key: &str, value: impl Display) -> Self {
        self.key(key);
        push_str(&mut self.buf, &value.to_string());
        self
    }

    /// Adds a string field, or `null` when absent.
    pub fn opt_str(self, key: &str, value: Option<impl Display>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Adds an integer field.
    pub fn num(self, key: &str, value: impl Into<i128>) -> Self {
        let text = value.into().to_string();
        self.raw(key, &text)
    }

    /// Adds a non-negative integer field that may exceed `i128` in theory (durations).
    pub fn unsigned(self, key: &str, value: u128) -> Self {
        self.raw(key, &value.to_string())
    }

    /// Adds a boolean field.
    pub fn bool(self, key: &str, value: bool) -> Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// The finished line, without a newline.
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }

    /// Prints the finished line on stdout.
    pub fn print(self) {
        println!("{}", self.finish());
    }

    fn key(&mut self, key: &str) {
        self.buf.push(',');
        push_str(&mut self.buf, key);
        self.buf.push(':');
    }

    /// Adds a field whose value is already JSON (`null`, a number, a nested object).
    pub fn raw(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.buf.push_str(value);
        self
    }
}

/// Appends `s` as a quoted JSON string (RFC 8259 §7 escaping).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn builds_one_line_objects() {
        let line = Event::new("mapped")
            .str("address", "[::1]:5")
            .num("rtt_ms", 3u32)
            .opt_str("other", None::<&str>)
            .bool("ok", true)
            .raw("all", r#"["a","b"]"#)
            .finish();
        assert_eq!(
            line,
            r#"{"event":"mapped","address":"[::1]:5","rtt_ms":3,"other":null,"ok":true,"all":["a","b"]}"#
        );
    }
}
