//! Unsubscribe requests that arrive by mail, at the `mailto` address of the
//! `List-Unsubscribe` header. brief sends `mailto:<addr>?subject=unsubscribe-<TOKEN>`,
//! so the token travels in the subject (or, if a mail client moved it, in the body).
//! Only a valid token counts: the sender's `From` is never used to guess who asked.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::path::Path;

/// The prefix that announces a token in a subject or body.
pub const TOKEN_PREFIX: &str = "unsubscribe-";
/// Larger messages are not unsubscribe requests; they are reported and skipped.
const MAX_MESSAGE: u64 = 10 * 1024 * 1024;

/// One message read from a maildir or an mbox.
#[derive(Debug)]
pub struct Message {
    /// Where it came from, for reports: a file, or `FILE, message N`.
    pub origin: String,
    pub raw: Vec<u8>,
}

/// Every message in a maildir's `new/` and `cur/` folders, in name order.
pub fn read_maildir(dir: &Path) -> Result<Vec<Message>> {
    let mut files = Vec::new();
    let mut found_any = false;
    for sub in ["new", "cur"] {
        let folder = dir.join(sub);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", folder.display()))
            }
        };
        found_any = true;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", folder.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || !entry.file_type()?.is_file() {
                continue;
            }
            files.push(entry.path());
        }
    }
    if !found_any {
        bail!(
            "{} is not a maildir (it has no new/ or cur/ folder)",
            dir.display()
        );
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let raw = if size > MAX_MESSAGE {
            Vec::new()
        } else {
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        };
        out.push(Message {
            origin: path.display().to_string(),
            raw,
        });
    }
    Ok(out)
}

/// The messages of an mbox file (mboxo or mboxrd: `>From ` lines are unquoted).
pub fn read_mbox(path: &Path) -> Result<Vec<Message>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(split_mbox(&data)
        .into_iter()
        .enumerate()
        .map(|(i, raw)| Message {
            origin: format!("{}, message {}", path.display(), i + 1),
            raw,
        })
        .collect())
}

fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(done) = current.take() {
                messages.push(done);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        if let Some(msg) = current.as_mut() {
            // mboxrd quotes `From ` lines in bodies as `>From `, `>>From `…
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            if quoted > 0 && line[quoted..].starts_with(b"From ") {
                msg.extend_from_slice(&line[1..]);
            } else {
                msg.extend_from_slice(line);
            }
        }
    }
    if let Some(done) = current {
        messages.push(done);
    }
    // The blank line that separates messages belongs to the mbox, not the message.
    for msg in &mut messages {
        if msg.ends_with(b"\n\n") {
            msg.pop();
        } else if msg.ends_with(b"\r\n\r\n") {
            msg.truncate(msg.len() - 2);
        }
    }
    messages
}

/// The decoded `Subject` of a message, if it has one.
pub fn subject(raw: &[u8]) -> Option<String> {
    let (head, _) = split_head(raw);
    let head = String::from_utf8_lossy(head);
    let unfolded = head
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("subject")
            .then(|| decode_words(value.trim()))
    })
}

/// The strings after `unsubscribe-` in the subject, then in the body (as sent, with
/// quoted-printable undone, and inside base64 blocks), without repeats.
pub fn candidate_tokens(raw: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |text: &str| {
        for token in tokens_in(text) {
            if !out.contains(&token) {
                out.push(token);
            }
        }
    };
    if let Some(subject) = subject(raw) {
        add(&subject);
    }
    let (_, body) = split_head(raw);
    let text = String::from_utf8_lossy(body);
    add(&text);
    add(&decode_quoted_printable(&text));
    for block in base64_blocks(&text) {
        add(&String::from_utf8_lossy(&block));
    }
    out
}

fn tokens_in(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(TOKEN_PREFIX) {
        let start = from + i + TOKEN_PREFIX.len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if token.len() >= 16 {
            out.push(token);
        }
        from = start;
    }
    out
}

fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    for (i, w) in raw.windows(2).enumerate() {
        if w == b"\n\n" {
            return (&raw[..i], &raw[i + 2..]);
        }
        if w == b"\r\n" && raw[i + 2..].starts_with(b"\r\n") {
            return (&raw[..i], &raw[i + 4..]);
        }
    }
    (raw, &[])
}

/// Decodes RFC 2047 encoded words (`=?utf-8?B?…?=`, `=?iso-8859-1?Q?…?=`); white space
/// between two encoded words is dropped, as the RFC says.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_space = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, used)) = rest.strip_prefix("=?").and_then(encoded_word) {
            if !last_was_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[2 + used..];
            last_was_word = true;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        rest = &rest[c.len_utf8()..];
        if c == ' ' || c == '\t' {
            pending_space.push(c);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
            last_was_word = false;
        }
    }
    out.push_str(&pending_space);
    out
}

/// Decodes `charset?enc?text?=` (after the `=?`); returns the text and the bytes used.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let end = s.find("?=")?;
    // The encoded text may itself contain `?` only as part of `?=`: find the third `?`.
    let mut parts = s.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let header_len = charset.len() + encoding.len() + 2;
    if end < header_len {
        return None;
    }
    let text = &s[header_len..end];
    if text.contains(' ') {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => STANDARD
            .decode(text.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(text))
            .ok()
            .or_else(|| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .ok()
            })?,
        "Q" | "q" => decode_q(text),
        _ => return None,
    };
    let charset = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    let decoded = match charset.as_str() {
        "iso-8859-1" | "latin1" | "iso-8859-15" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    Some((decoded, end + 2))
}

fn decode_q(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => match hex_pair(bytes, i + 1) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let pair = bytes.get(at..at + 2)?;
    u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()
}

/// Undoes quoted-printable: soft line breaks and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if let Some(b) = hex_pair(bytes, i + 1) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs of lines that look like base64 (a MIME part's body), decoded.
fn base64_blocks(text: &str) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    let looks_base64 = |l: &str| {
        l.len() >= 16
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    };
    for line in text.lines().map(str::trim).chain(std::iter::once("")) {
        if looks_base64(line) {
            current.push_str(line);
        } else if !current.is_empty() {
            if let Ok(bytes) = STANDARD.decode(&current) {
                blocks.push(bytes);
            }
            current.clear();
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(
            decode_words("=?utf-8?B?dW5zdWJzY3JpYmUt?= abc"),
            "unsubscribe- abc"
        );
        assert_eq!(
            decode_words("=?UTF-8?Q?unsub?= =?UTF-8?Q?scribe-x?="),
            "unsubscribe-x"
        );
        assert_eq!(
            decode_words("=?iso-8859-1?Q?caf=E9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_words("plain  text"), "plain  text");
        assert_eq!(decode_words("=?broken"), "=?broken");
    }

    #[test]
    fn finds_tokens_in_subject_and_body() {
        let msg = b"From: a@b.c\r\nSubject: =?utf-8?Q?unsubscribe-AAAAAAAAAAAAAAAAAAAA?=\r\n\r\nhello unsubscribe-BBBBBBBBBB=\r\nBBBBBBBBBB there\r\n";
        // The body's token is split by a quoted-printable soft break: found once joined.
        assert_eq!(candidate_tokens(msg), vec!["A".repeat(20), "B".repeat(20)]);
    }

    #[test]
    fn splits_mbox_and_unquotes_from_lines() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From here\n\nFrom c@d Thu Jan  1 00:00:00 2024\nSubject: two\n\nsecond\n";
        let msgs = split_mbox(mbox);
        assert_eq!(msgs.len(), 2);
        assert_eq!(subject(&msgs[0]).as_deref(), Some("one"));
        assert!(String::from_utf8_lossy(&msgs[0]).contains("\nFrom here\n"));
        assert_eq!(subject(&msgs[1]).as_deref(), Some("two"));
    }

    proptest! {
        #[test]
        fn junk_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600), s in ".{0,200}") {
            let _ = candidate_tokens(&raw);
            let _ = split_mbox(&raw);
            let _ = decode_words(&s);
            let _ = candidate_tokens(s.as_bytes());
        }
    }
}
