//! The plain-text part after its template has run: trailing spaces removed, runs of
//! blank lines collapsed, long lines wrapped at [`WIDTH`] columns of display width (a
//! CJK character takes two). A URL or a personalization marker is never broken (a line
//! holding only a long URL stays long).

use unicode_width::UnicodeWidthStr;

/// The widest a line of the text part gets (unless one word is wider): 76, the line
/// length quoted-printable allows, so an ASCII line never needs a soft line break.
pub const WIDTH: usize = 76;

const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

/// Tidies and wraps a rendered text part.
pub fn finish(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len() + rendered.len() / 16);
    let mut blank_run = 0usize;
    for line in rendered.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        wrap_line(line, WIDTH, &mut out);
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Appends `line` (no newline in it) to `out`, wrapped at `width` columns. Lines that
/// fit are copied as they are. Continuation lines keep the line's indentation, quote
/// marks, and the room of a list bullet.
pub fn wrap_line(line: &str, width: usize, out: &mut String) {
    if line.len() <= width || width_of(line) <= width {
        out.push_str(line);
        out.push('\n');
        return;
    }
    let (prefix, rest) = split_prefix(line);
    let continuation: String = prefix
        .chars()
        .map(|c| if c == '>' { '>' } else { ' ' })
        .collect();
    out.push_str(prefix);
    let mut current_width = width_of(prefix);
    let mut has_word = false;
    for word in words(rest) {
        let w = width_of(word);
        if has_word && current_width + 1 + w > width {
            out.push('\n');
            out.push_str(&continuation);
            current_width = continuation.len();
            has_word = false;
        }
        if has_word {
            out.push(' ');
            current_width += 1;
        }
        out.push_str(word);
        current_width += w;
        has_word = true;
    }
    out.push('\n');
}

/// Columns `s` takes in a terminal or a mail app's monospace view.
pub fn width_of(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.width()
    }
}

/// The leading indentation, quote marks and list bullet of a line.
fn split_prefix(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'>') {
        i += 1;
    }
    // A bullet: "- ", "* " or "12. ".
    let rest = &line[i..];
    let bullet_len = if rest.starts_with("- ") || rest.starts_with("* ") {
        2
    } else {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && digits < 4 && rest[digits..].starts_with(". ") {
            digits + 2
        } else {
            0
        }
    };
    line.split_at(i + bullet_len)
}

/// Words separated by spaces; a marker is one word even if its name has spaces.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return None;
        }
        let mut in_marker = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                MARK_OPEN => in_marker = true,
                MARK_CLOSE => in_marker = false,
                ' ' if !in_marker => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lines_are_untouched_and_blank_runs_collapse() {
        assert_eq!(finish("a  \n\n\n\nb\n\n"), "a\n\nb\n");
    }

    #[test]
    fn long_lines_wrap_with_bullet_room() {
        let line = format!("- {}", "word ".repeat(30));
        let out = finish(&line);
        for l in out.lines() {
            assert!(l.chars().count() <= WIDTH, "{l:?}");
        }
        assert_eq!(WIDTH, 76);
        assert!(out.lines().skip(1).all(|l| l.starts_with("  word")));
        assert_eq!(out.split_whitespace().filter(|w| *w == "word").count(), 30);
    }

    #[test]
    fn wide_characters_count_two_columns() {
        // 30 CJK words of two characters: 4 columns each, 5 with the space.
        let line = "東京 ".repeat(30);
        let out = finish(&line);
        assert!(out.lines().count() > 1, "{out}");
        for l in out.lines() {
            assert!(width_of(l) <= WIDTH, "{l:?} is {} columns", width_of(l));
        }
        assert_eq!(out.lines().next().unwrap().split(' ').count(), 15);
        // Accented Latin letters are one column each, like ASCII.
        let latin = "café ".repeat(15);
        assert_eq!(width_of(latin.trim_end()), 74);
        assert_eq!(finish(&latin).lines().count(), 1);
    }

    #[test]
    fn urls_and_markers_are_never_broken() {
        let url = format!("https://example.org/{}", "x".repeat(100));
        let marker = "\u{E000}subscriber.home town\u{E001}";
        let line = format!("> see {url} and {marker} {}", "y ".repeat(40));
        let out = finish(&line);
        assert!(out.lines().any(|l| l == format!("> {url}")), "{out}");
        assert!(out.contains(marker));
        assert!(out.lines().all(|l| l.starts_with('>')));
    }
}
