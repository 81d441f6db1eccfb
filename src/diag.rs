//! Diagnostics: every problem brief reports about a file names the file, line and
//! column, `path:line:col: error: message`, the way compilers do.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one file. Line and column are 1-based; column counts characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<PathBuf>,
        line: usize,
        column: usize,
        msg: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            column,
            severity: Severity::Error,
            message: msg.into(),
        }
    }

    pub fn warning(
        file: impl Into<PathBuf>,
        line: usize,
        column: usize,
        msg: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, msg)
        }
    }

    /// An error located at a byte offset of `source`.
    pub fn at_offset(
        file: impl Into<PathBuf>,
        source: &str,
        offset: usize,
        msg: impl Into<String>,
    ) -> Self {
        let (line, column) = line_col(source, offset);
        Diagnostic::error(file, line, column, msg)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

/// A list of diagnostics that is itself an error (for `?`), displayed one per line.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of a byte offset. Offsets past the end or
/// inside a character are clamped, never a panic.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Deserializes TOML strictly. Types use `#[serde(deny_unknown_fields)]`; on an
/// unknown key the error names the key, its position and the nearest known key.
/// `line_offset` is added to reported lines, for TOML embedded in a larger file
/// (an edition's front matter).
pub fn from_toml_strict<T: DeserializeOwned>(
    file: &Path,
    source: &str,
    line_offset: usize,
) -> Result<T, Diagnostic> {
    toml::from_str(source).map_err(|e| toml_error(file, source, line_offset, &e))
}

/// Turns a `toml` error into a located diagnostic with a friendlier message.
pub fn toml_error(
    file: &Path,
    source: &str,
    line_offset: usize,
    e: &toml::de::Error,
) -> Diagnostic {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(source, s.start));
    let message = friendly_toml_message(e.message());
    Diagnostic::error(file, line + line_offset, column, message)
}

fn friendly_toml_message(raw: &str) -> String {
    let raw = raw.trim();
    // serde's wording: "unknown field `titel`, expected one of `title`, `subject`"
    // (or "expected `title`" when there is only one).
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            return match nearest(key, &known) {
                Some(best) => format!("unknown key `{key}` (did you mean `{best}`?)"),
                None if known.is_empty() => format!("unknown key `{key}`"),
                None => format!("unknown key `{key}` (known keys: {})", known.join(", ")),
            };
        }
    }
    raw.to_string()
}

/// The known word closest to `word`, if it is close enough to be a plausible typo.
pub fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word_l = word.to_lowercase();
    known
        .iter()
        .map(|k| (levenshtein(&word_l, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count().max(word.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        title: String,
        subject: Option<String>,
    }

    #[test]
    fn line_col_counts_characters() {
        let s = "ab\ncdé\nf";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 7), (2, 4));
        assert_eq!(line_col(s, 6), (2, 3)); // inside 'é' clamps back
        assert_eq!(line_col(s, 999), (3, 2));
    }

    #[test]
    fn unknown_key_names_nearest() {
        let src = "title = \"x\"\nsubjet = \"y\"\n";
        let d = from_toml_strict::<Sample>(Path::new("e.md"), src, 1).unwrap_err();
        assert_eq!(d.line, 3);
        assert_eq!(d.column, 1);
        assert_eq!(d.message, "unknown key `subjet` (did you mean `subject`?)");
    }

    #[test]
    fn nearest_ignores_far_words() {
        assert_eq!(nearest("zzzzzz", &["title", "subject"]), None);
        assert_eq!(nearest("Titel", &["title", "subject"]), Some("title"));
    }
}
