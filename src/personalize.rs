//! The personalization seam. Templates are rendered and compiled once per edition with
//! *markers* in place of per-recipient values; per recipient, the markers are replaced
//! by the values, escaped for the context (HTML or plain text). A marker is a name
//! between two private-use characters, which edition text can never contain (the
//! edition parser rejects them), so no content can forge one.

use std::borrow::Cow;

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Per-recipient fields every template can use: the unsubscribe URL, and the
/// subscriber's `email`, `name` and every other CSV column as `subscriber.<column>`.
pub const UNSUBSCRIBE_URL: &str = "unsubscribe_url";
/// The reader's preference centre (`<base_url>/p/<token>`, the same token).
pub const PREFERENCES_URL: &str = "preferences_url";

/// The field key of a subscriber column (`email`, `name`, or any other CSV column).
pub fn subscriber_field(column: &str) -> String {
    format!("subscriber.{column}")
}

/// The marker that stands for field `key` until personalization.
pub fn marker(key: &str) -> String {
    format!("{OPEN}{key}{CLOSE}")
}

/// True if `text` contains a character reserved for markers.
pub fn has_marker_chars(text: &str) -> bool {
    text.contains([OPEN, CLOSE])
}

/// How a value is escaped when it replaces a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// For HTML text and attribute values: `& < > " '`.
    Html,
    /// For the plain-text part: as is.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes that are the same for every recipient.
    Static(String),
    /// Index into [`Template::fields`].
    Field(usize),
}

/// A compiled document split at its markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    fields: Vec<String>,
    static_len: usize,
}

impl Template {
    /// Splits `text` at its markers. An unterminated marker stays static text.
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut fields: Vec<String> = Vec::new();
        let mut rest = text;
        let mut pending = String::new();
        while let Some(start) = rest.find(OPEN) {
            let after = &rest[start + OPEN.len_utf8()..];
            let Some(end) = after.find(CLOSE) else { break };
            let key = &after[..end];
            if key.contains(OPEN) {
                // Not a well-formed marker: keep the opener as text and go on.
                pending.push_str(&rest[..start + OPEN.len_utf8()]);
                rest = after;
                continue;
            }
            pending.push_str(&rest[..start]);
            if !pending.is_empty() {
                parts.push(Part::Static(std::mem::take(&mut pending)));
            }
            let index = match fields.iter().position(|f| f == key) {
                Some(i) => i,
                None => {
                    fields.push(key.to_string());
                    fields.len() - 1
                }
            };
            parts.push(Part::Field(index));
            rest = &after[end + CLOSE.len_utf8()..];
        }
        pending.push_str(rest);
        if !pending.is_empty() {
            parts.push(Part::Static(pending));
        }
        let static_len = parts
            .iter()
            .map(|p| match p {
                Part::Static(s) => s.len(),
                Part::Field(_) => 0,
            })
            .sum();
        Template {
            parts,
            fields,
            static_len,
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The field names, in the order [`Template::render`] expects their values.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Fills in `values` (one per field, in [`Template::fields`] order).
    pub fn render(&self, values: &[&str], escape: Escape) -> String {
        let mut out = String::with_capacity(self.static_len + 256);
        self.render_into(values, escape, &mut out);
        out
    }

    pub fn render_into(&self, values: &[&str], escape: Escape, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Static(s) => out.push_str(s),
                Part::Field(i) => {
                    let v = values.get(*i).copied().unwrap_or("");
                    out.push_str(&escape_value(v, escape));
                }
            }
        }
    }
}

/// Escapes a value for its context.
pub fn escape_value(v: &str, escape: Escape) -> Cow<'_, str> {
    match escape {
        Escape::None => Cow::Borrowed(v),
        Escape::Html => {
            if !v.contains(['&', '<', '>', '"', '\'']) {
                return Cow::Borrowed(v);
            }
            let mut s = String::with_capacity(v.len() + 16);
            for c in v.chars() {
                match c {
                    '&' => s.push_str("&amp;"),
                    '<' => s.push_str("&lt;"),
                    '>' => s.push_str("&gt;"),
                    '"' => s.push_str("&quot;"),
                    '\'' => s.push_str("&#39;"),
                    c => s.push(c),
                }
            }
            Cow::Owned(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_fills() {
        let doc = format!(
            "<a href=\"{}\">Hi {}</a>{}",
            marker("u"),
            marker("name"),
            marker("u")
        );
        let t = Template::parse(&doc);
        assert_eq!(t.fields(), &["u".to_string(), "name".to_string()]);
        let html = t.render(&["https://x/?a=1&b=2", "Tom & <Jerry>"], Escape::Html);
        assert_eq!(
            html,
            "<a href=\"https://x/?a=1&amp;b=2\">Hi Tom &amp; &lt;Jerry&gt;</a>https://x/?a=1&amp;b=2"
        );
        let text = t.render(&["u", "Tom & Jerry"], Escape::None);
        assert_eq!(text, "<a href=\"u\">Hi Tom & Jerry</a>u");
    }

    #[test]
    fn malformed_markers_stay_text() {
        let doc = format!("a{OPEN}b{OPEN}c{CLOSE}d{OPEN}e");
        let t = Template::parse(&doc);
        assert_eq!(t.fields(), &["c".to_string()]);
        assert_eq!(t.render(&["X"], Escape::None), format!("a{OPEN}bXd{OPEN}e"));
    }
}
