//! Unsubscribe requests that arrive by mail, at the `mailto` address of the
//! `List-Unsubscribe` header. brief sends `mailto:<addr>?subject=unsubscribe-<TOKEN>`,
//! so the token travels in the subject (or, if a mail client moved it, in the body, or
//! in a message forwarded as an attachment). Only a valid token counts: the sender's
//! `From` is never used to guess who asked.
//!
//! Mailboxes are read one message at a time ([`crate::bounce::mailbox`]) and each
//! message is parsed by `mail-parser` into a small [`Message`] (its subject and
//! candidate tokens), in time linear in its size and with bounded work: so the caller
//! parses everything first and then applies the requests in one short write.

use crate::bounce::mailbox::{MailMessage, Maildir, Mbox};
use anyhow::Result;
use mail_parser::{MessageParser, PartType};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The prefix that announces a token in a subject or body.
pub const TOKEN_PREFIX: &str = "unsubscribe-";
/// More candidate tokens than this in one message is no request but a flood: the
/// message is rejected without checking any of them.
const MAX_TOKENS: usize = 16;
/// brief's tokens are far shorter; a longer run of token characters is cut.
const MAX_TOKEN_LEN: usize = 256;

/// One message read from a maildir or an mbox, already parsed.
#[derive(Debug)]
pub struct Message {
    /// Where it came from, for reports: a file, or `FILE#N` for an mbox.
    pub origin: String,
    /// The decoded subject, at most 80 characters (for reports).
    pub subject: String,
    /// The strings after `unsubscribe-`, without repeats; empty when `problem` is set.
    pub tokens: Vec<String>,
    /// Why the message cannot be a request (too large, a flood of tokens).
    pub problem: Option<String>,
    /// The maildir and file it was read from (None for an mbox).
    file: Option<(PathBuf, MailMessage)>,
}

impl Message {
    /// After the requests were applied: a maildir message that asked for something is
    /// moved to `cur/`; one that could not be used is moved aside to
    /// `.brief-rejected/`, so it is reported once and never read again. Returns where
    /// a rejected message went. Nothing to do for an mbox.
    pub fn file_away(&self, used: bool) -> Result<Option<PathBuf>> {
        let Some((root, msg)) = &self.file else {
            return Ok(None);
        };
        let maildir = Maildir::open(root)?;
        if used {
            maildir.mark_processed(msg)?;
            Ok(None)
        } else {
            maildir.move_aside(msg).map(Some)
        }
    }
}

/// Every message in a maildir's `new/` and `cur/` folders, in name order.
pub fn read_maildir(dir: &Path) -> Result<Vec<Message>> {
    let maildir = Maildir::open(dir)?;
    let mut out = Vec::new();
    for item in maildir.all_messages()? {
        let mut msg = item?;
        let mut parsed = parse(&msg);
        msg.raw = Vec::new(); // keep only what is needed to move the file
        parsed.origin = msg
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        parsed.file = Some((dir.to_path_buf(), msg));
        out.push(parsed);
    }
    Ok(out)
}

/// The messages of an mbox file (mboxo or mboxrd: `>From ` lines are unquoted).
pub fn read_mbox(path: &Path) -> Result<Vec<Message>> {
    let mut mbox = Mbox::open(path)?;
    let mut out = Vec::new();
    while let Some(msg) = mbox.next_message()? {
        out.push(parse(&msg));
    }
    Ok(out)
}

fn parse(msg: &MailMessage) -> Message {
    let mut parsed = Message {
        origin: msg.source.clone(),
        subject: subject(&msg.raw)
            .map(|s| s.chars().take(80).collect())
            .unwrap_or_default(),
        tokens: Vec::new(),
        problem: None,
        file: None,
    };
    if msg.truncated {
        parsed.problem = Some("too large to be an unsubscribe request".into());
        return parsed;
    }
    let tokens = candidate_tokens(&msg.raw);
    if tokens.len() > MAX_TOKENS {
        parsed.problem = Some(format!(
            "more than {MAX_TOKENS} unsubscribe tokens: not a request"
        ));
    } else {
        parsed.tokens = tokens;
    }
    parsed
}

/// The decoded `Subject` of a message, if it has one.
pub fn subject(raw: &[u8]) -> Option<String> {
    MessageParser::default()
        .parse_headers(raw)?
        .subject()
        .map(str::to_string)
}

/// The strings after `unsubscribe-` in the subject, then in every text part (decoded;
/// quoted-printable soft breaks joined even where the part does not declare it),
/// including messages forwarded as attachments, without repeats. Stops collecting
/// past [`MAX_TOKENS`] + 1.
pub fn candidate_tokens(raw: &[u8]) -> Vec<String> {
    let mut found = Tokens::default();
    let Some(message) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    if let Some(subject) = message.subject() {
        found.scan(subject);
    }
    let mut stack = vec![&message];
    while let Some(msg) = stack.pop() {
        for part in &msg.parts {
            match &part.body {
                PartType::Text(text) | PartType::Html(text) => {
                    found.scan(text);
                    if text.contains("=\n") || text.contains("=\r\n") {
                        found.scan(&join_soft_breaks(text));
                    }
                }
                PartType::Message(forwarded) => {
                    if let Some(subject) = forwarded.subject() {
                        found.scan(subject);
                    }
                    stack.push(forwarded);
                }
                _ => {}
            }
            if found.full() {
                return found.list;
            }
        }
    }
    found.list
}

#[derive(Default)]
struct Tokens {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Tokens {
    fn full(&self) -> bool {
        self.list.len() > MAX_TOKENS
    }

    /// Linear: each match of the prefix reads at most [`MAX_TOKEN_LEN`] characters.
    fn scan(&mut self, text: &str) {
        let lower = text.to_ascii_lowercase(); // same byte offsets as `text`
        for (at, _) in lower.match_indices(TOKEN_PREFIX) {
            if self.full() {
                return;
            }
            let start = at + TOKEN_PREFIX.len();
            let token: String = text[start..]
                .chars()
                .take(MAX_TOKEN_LEN)
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if token.len() >= 16 && self.seen.insert(token.clone()) {
                self.list.push(token);
            }
        }
    }
}

/// Joins quoted-printable soft line breaks (`=` at the end of a line), for a token a
/// mail client wrapped in a part that does not say it is quoted-printable.
fn join_soft_breaks(text: &str) -> String {
    text.replace("=\r\n", "").replace("=\n", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_subjects() {
        let b64 = b"Subject: =?utf-8?B?dW5zdWJzY3JpYmUt?= abc\r\n\r\n";
        assert_eq!(subject(b64).as_deref(), Some("unsubscribe- abc"));
        let split = b"Subject: =?UTF-8?Q?unsub?= =?UTF-8?Q?scribe-x?=\r\n\r\n";
        assert_eq!(subject(split).as_deref(), Some("unsubscribe-x"));
        let latin = b"Subject: =?iso-8859-1?Q?caf=E9_au_lait?=\r\n\r\n";
        assert_eq!(subject(latin).as_deref(), Some("café au lait"));
    }

    #[test]
    fn a_q_encoded_subject_that_starts_with_an_escape_is_decoded() {
        // `=75` is `u`: the old hand decoder took the `?=` of `Q?=75` for the end.
        let msg = format!(
            "From: a@b.c\r\nSubject: =?UTF-8?Q?=75nsubscribe-{}?=\r\n\r\n",
            "T".repeat(20)
        );
        assert_eq!(candidate_tokens(msg.as_bytes()), ["T".repeat(20)]);
    }

    #[test]
    fn finds_tokens_in_subject_and_body() {
        let msg = b"From: a@b.c\r\nSubject: =?utf-8?Q?unsubscribe-AAAAAAAAAAAAAAAAAAAA?=\r\n\r\nhello unsubscribe-BBBBBBBBBB=\r\nBBBBBBBBBB there\r\n";
        // The body's token is split by a quoted-printable soft break: found once joined.
        let tokens = candidate_tokens(msg);
        assert!(tokens.contains(&"A".repeat(20)) && tokens.contains(&"B".repeat(20)));
    }

    #[test]
    fn reads_a_request_forwarded_as_an_attachment() {
        // The forwarded message's subject is an encoded word: only a MIME parser sees it.
        let msg = "From: reader@example.net\r\nSubject: Fwd: please\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: reader@example.net\r\nSubject: =?UTF-8?B?dW5zdWJzY3JpYmUtQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=?=\r\n\r\nbye\r\n--b--\r\n";
        assert_eq!(candidate_tokens(msg.as_bytes()), ["C".repeat(20)]);
    }

    #[test]
    fn a_flood_of_tokens_is_rejected_without_checking_them() {
        let mut raw = b"From: x@y\r\nSubject: hi\r\n\r\n".to_vec();
        for i in 0..100_000 {
            raw.extend_from_slice(format!("unsubscribe-{i:020} ").as_bytes());
        }
        let msg = MailMessage {
            source: "flood".into(),
            path: None,
            raw,
            truncated: false,
        };
        let parsed = parse(&msg);
        assert!(parsed.tokens.is_empty());
        assert!(parsed.problem.unwrap().contains("more than 16"));
    }

    #[test]
    fn repeated_prefixes_do_not_read_the_rest_of_the_text_each_time() {
        let text = "unsubscribe-".repeat(50_000);
        let mut found = Tokens::default();
        found.scan(&text);
        // Each match reads at most MAX_TOKEN_LEN characters.
        assert!(found.list.iter().all(|t| t.len() <= MAX_TOKEN_LEN));
    }

    proptest! {
        #[test]
        fn junk_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600), s in ".{0,200}") {
            let _ = candidate_tokens(&raw);
            let _ = subject(&raw);
            let _ = candidate_tokens(s.as_bytes());
        }
    }
}
