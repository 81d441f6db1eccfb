//! Messages, prepared once per edition and personalized per recipient cheaply.
//!
//! Everything that is the same for every reader is encoded once: the static headers
//! (through lettre's header encoder), and every static segment of the text and HTML
//! parts as quoted-printable with CRLF line ends. Each encoded piece ends at a line
//! boundary (a hard line break, or a soft one `=\r\n`), so pieces concatenate into valid
//! quoted-printable, and a `.` at the start of a line is written `=2E`, so the message
//! never needs dot-stuffing on the wire. Per recipient, only `Message-ID`, `To`,
//! `List-Unsubscribe` and the personal values are encoded, and the message is the list
//! of prepared and personal slices ([`Rendered`]), written out without copying the
//! static bytes.

use crate::personalize::{self, Escape, Part, Template};
use anyhow::{bail, Context, Result};
use base64::Engine;
use lettre::message::header::{self, Headers};
use lettre::message::Mailbox;
use std::io::Write;

/// The multipart boundary. `=_` never occurs in quoted-printable output (a literal `=`
/// is always `=3D`), so no body line can match it.
const BOUNDARY: &str = "=_brief_alternative_7d3f";

/// What one edition's messages are built from.
#[derive(Debug, Clone)]
pub struct EditionParts {
    pub subject: String,
    /// HTML with personalization markers.
    pub html: String,
    /// Plain text with personalization markers.
    pub text: String,
}

/// The header values the newsletter's config supplies.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: String,
    pub reply_to: Option<String>,
    pub list_name: String,
    pub list_id: String,
    pub date: chrono::DateTime<chrono::Utc>,
    /// Extra CSV column names, in the order of [`Personal::columns`].
    pub columns: Vec<String>,
}

/// Where a marker's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Unsubscribe,
    Preferences,
    Email,
    Name,
    Column(usize),
    /// A field nobody supplies (compile rejects these; render empty if one slips by).
    Unknown,
}

#[derive(Debug, Clone)]
enum Step {
    Static(std::ops::Range<usize>),
    /// A personal value, starting on a line that already holds this many characters;
    /// it ends with a soft break, so the next static piece starts a line.
    Field(Source, Escape, usize),
}

/// An edition's messages, prepared.
#[derive(Debug, Clone)]
pub struct Prepared {
    statics: Vec<u8>,
    /// Static headers before the personal ones.
    head: std::ops::Range<usize>,
    body: Vec<Step>,
}

/// The per-recipient values.
#[derive(Debug, Clone, Copy)]
pub struct Personal<'a> {
    pub email: &'a str,
    pub name: &'a str,
    /// Values of the extra columns, in [`Envelope::columns`] order (missing ones are empty).
    pub columns: &'a [String],
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
    /// An optional `mailto:` URI for List-Unsubscribe (already including the subject).
    pub unsubscribe_mailto: Option<&'a str>,
    pub message_id: &'a str,
}

/// One recipient's message: a sequence of slices of the prepared bytes and of its own.
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    personal: Vec<u8>,
    pieces: Vec<(bool, u32, u32)>,
}

impl Rendered {
    /// Puts a header field (complete, CRLF-terminated) at the top of the message:
    /// where a `DKIM-Signature` goes.
    pub fn prepend_header(&mut self, field: &[u8]) {
        let start = self.personal.len() as u32;
        self.personal.extend_from_slice(field);
        self.pieces
            .insert(0, (false, start, self.personal.len() as u32));
    }
}

impl Prepared {
    pub fn new(env: &Envelope, parts: &EditionParts) -> Result<Prepared> {
        let mut statics = Vec::with_capacity(parts.html.len() * 11 / 10 + parts.text.len() + 4096);
        let from = header_mailbox(&env.from)
            .with_context(|| format!("`from` is not a valid address: {}", env.from))?;
        mailbox_field(&mut statics, "From", from.0.as_deref(), &from.1);
        if let Some(r) = &env.reply_to {
            let reply = header_mailbox(r)
                .with_context(|| format!("`reply_to` is not a valid address: {r}"))?;
            mailbox_field(&mut statics, "Reply-To", reply.0.as_deref(), &reply.1);
        }
        let mut w = FieldWriter::start(&mut statics, "Subject");
        w.unstructured(&parts.subject);
        w.end();
        let mut headers = Headers::new();
        headers.set(header::Date::new(env.date.into()));
        statics.extend_from_slice(headers.to_string().as_bytes());
        if env
            .list_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            bail!("`list_id` must be a name without spaces or <>");
        }
        let mut w = FieldWriter::start(&mut statics, "List-Id");
        w.phrase(&env.list_name.replace(['<', '>'], ""));
        w.token(&format!("<{}>", env.list_id));
        w.end();
        let head = 0..statics.len();

        let mut body = Vec::new();
        let push_static = |statics: &mut Vec<u8>, body: &mut Vec<Step>, bytes: &[u8]| {
            let start = statics.len();
            statics.extend_from_slice(bytes);
            match body.last_mut() {
                Some(Step::Static(r)) if r.end == start => r.end = statics.len(),
                _ => body.push(Step::Static(start..statics.len())),
            }
        };
        let part_head = |kind: &str| {
            format!(
                "--{BOUNDARY}\r\nContent-Type: text/{kind}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
        };
        let top = format!(
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n\r\n{}",
            part_head("plain")
        );
        push_static(&mut statics, &mut body, top.as_bytes());
        for (template, escape, next) in [
            (
                &parts.text,
                Escape::None,
                format!("\r\n{}", part_head("html")),
            ),
            (&parts.html, Escape::Html, format!("\r\n--{BOUNDARY}--\r\n")),
        ] {
            let template = Template::parse(template);
            let sources: Vec<Source> = template
                .fields()
                .iter()
                .map(|f| source_of(f, &env.columns))
                .collect();
            let mut encoded = Vec::new();
            let mut col = 0;
            for part in template.parts() {
                match part {
                    Part::Static(s) => {
                        encoded.clear();
                        // Every static piece starts a line (the piece before it ended
                        // with a line break or a personal value's soft break).
                        col = qp_encode_from(s.as_bytes(), 0, &mut encoded);
                        push_static(&mut statics, &mut body, &encoded);
                    }
                    Part::Field(i) => {
                        body.push(Step::Field(sources[*i], escape, col));
                        col = 0;
                    }
                }
            }
            encoded.clear();
            soft_break(col, &mut encoded);
            push_static(&mut statics, &mut body, &encoded);
            push_static(&mut statics, &mut body, next.as_bytes());
        }
        Ok(Prepared {
            statics,
            head,
            body,
        })
    }

    /// Builds one recipient's message into `out` (reusing its buffers).
    pub fn render(&self, p: &Personal<'_>, out: &mut Rendered) {
        out.personal.clear();
        out.pieces.clear();
        out.pieces
            .push((true, self.head.start as u32, self.head.end as u32));
        let start = out.personal.len();
        personal_headers(p, &mut out.personal);
        out.pieces
            .push((false, start as u32, out.personal.len() as u32));
        for step in &self.body {
            match step {
                Step::Static(r) => out.pieces.push((true, r.start as u32, r.end as u32)),
                Step::Field(source, escape, col) => {
                    let value = match source {
                        Source::Unsubscribe => p.unsubscribe_url,
                        Source::Preferences => p.preferences_url,
                        Source::Email => p.email,
                        Source::Name => p.name,
                        Source::Column(i) => p.columns.get(*i).map_or("", String::as_str),
                        Source::Unknown => "",
                    };
                    let start = out.personal.len();
                    let end_col = qp_encode_from(
                        personalize::escape_value(value, *escape).as_bytes(),
                        *col,
                        &mut out.personal,
                    );
                    soft_break(end_col, &mut out.personal);
                    if out.personal.len() > start {
                        out.pieces
                            .push((false, start as u32, out.personal.len() as u32));
                    }
                }
            }
        }
    }

    /// The slices of a rendered message, in order.
    pub fn slices<'a>(&'a self, r: &'a Rendered) -> impl Iterator<Item = &'a [u8]> + 'a {
        r.pieces.iter().map(move |&(is_static, a, b)| {
            let src = if is_static {
                &self.statics
            } else {
                &r.personal
            };
            &src[a as usize..b as usize]
        })
    }

    pub fn len(&self, r: &Rendered) -> usize {
        r.pieces.iter().map(|&(_, a, b)| (b - a) as usize).sum()
    }

    pub fn write_to(&self, r: &Rendered, w: &mut impl Write) -> std::io::Result<()> {
        for s in self.slices(r) {
            w.write_all(s)?;
        }
        Ok(())
    }

    pub fn to_bytes(&self, r: &Rendered) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len(r));
        for s in self.slices(r) {
            v.extend_from_slice(s);
        }
        v
    }
}

fn source_of(field: &str, columns: &[String]) -> Source {
    if field == personalize::UNSUBSCRIBE_URL {
        return Source::Unsubscribe;
    }
    if field == personalize::PREFERENCES_URL {
        return Source::Preferences;
    }
    match field.strip_prefix("subscriber.") {
        Some("email") => Source::Email,
        Some("name") => Source::Name,
        Some(col) => columns
            .iter()
            .position(|c| c == col)
            .map_or(Source::Unknown, Source::Column),
        None => Source::Unknown,
    }
}

/// `Message-ID`, `To` and `List-Unsubscribe` for one recipient.
fn personal_headers(p: &Personal<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"Message-ID: ");
    out.extend_from_slice(header_safe(p.message_id).as_bytes());
    out.extend_from_slice(b"\r\n");
    // The audience refuses names with control characters; anything that slips
    // through is dropped rather than trusted.
    let name = (!p.name.is_empty() && !p.name.chars().any(char::is_control)).then_some(p.name);
    match p.email.parse::<lettre::Address>() {
        Ok(_) if p.email.is_ascii() => mailbox_field(out, "To", name, p.email),
        _ => {
            // Unreachable for validated recipients; never emit an unvalidated value.
            out.extend_from_slice(b"To: undisclosed-recipients:;\r\n");
        }
    }
    // Folded between the URIs (the URIs themselves must stay whole).
    let mut w = FieldWriter::start(out, "List-Unsubscribe");
    let url = header_safe(p.unsubscribe_url);
    match p.unsubscribe_mailto {
        Some(m) => {
            w.token(&format!("<{url}>,"));
            w.token(&format!("<{}>", header_safe(m)));
        }
        None => w.token(&format!("<{url}>")),
    }
    w.end();
}

/// A configured mailbox (`Name <addr>` or `addr`) as it goes into a header: the name,
/// and the address with its domain in A-labels (brief's headers are 7-bit).
fn header_mailbox(value: &str) -> Result<(Option<String>, String)> {
    let mailbox: Mailbox = value.parse()?;
    let address = mailbox.email.to_string();
    let (local, domain) = address
        .rsplit_once('@')
        .context("the address has no domain")?;
    if !local.is_ascii() {
        bail!("a non-ASCII local part needs SMTPUTF8 headers, which brief does not write");
    }
    let domain = idna::domain_to_ascii(domain)
        .map_err(|_| anyhow::anyhow!("the domain is not a valid internationalized name"))?;
    Ok((mailbox.name, format!("{local}@{domain}")))
}

/// `Name: display-name <addr>` (or `Name: addr`), folded.
fn mailbox_field(out: &mut Vec<u8>, field: &str, name: Option<&str>, address: &str) {
    let mut w = FieldWriter::start(out, field);
    match name {
        Some(n) if !n.trim().is_empty() => {
            w.phrase(n);
            w.token(&format!("<{address}>"));
        }
        _ => w.token(address),
    }
    w.end();
}

/// Longest header line brief aims for (RFC 5322 2.1.1: 78 characters); lines are
/// folded before a token that would pass it.
const FOLD_AT: usize = 78;
/// Longest token written as it is: with the field name and a space it stays far below
/// RFC 5322's hard limit of 998 bytes a line. Longer words become encoded words.
const MAX_TOKEN: usize = 900;
/// Input bytes per RFC 2047 encoded word: 45 bytes are 60 base64 characters, and with
/// `=?utf-8?b?` and `?=` the word is 72 characters (the limit is 75).
const ENCODED_CHUNK: usize = 45;

/// Writes one header field token by token, folding (CRLF and a space) before a token
/// that would pass [`FOLD_AT`]; no line is ever longer than 998 bytes.
struct FieldWriter<'a> {
    out: &'a mut Vec<u8>,
    col: usize,
    /// Nothing written after the field name yet.
    first: bool,
}

impl<'a> FieldWriter<'a> {
    fn start(out: &'a mut Vec<u8>, name: &str) -> FieldWriter<'a> {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        FieldWriter {
            col: name.len() + 1,
            out,
            first: true,
        }
    }

    /// One token, after a space or a fold.
    fn token(&mut self, token: &str) {
        if !self.first && self.col + 1 + token.len() > FOLD_AT {
            self.out.extend_from_slice(b"\r\n ");
            self.col = 1;
        } else {
            self.out.push(b' ');
            self.col += 1;
        }
        self.out.extend_from_slice(token.as_bytes());
        self.col += token.len();
        self.first = false;
    }

    /// `text` as RFC 2047 encoded words (UTF-8, base64), each holding whole
    /// characters.
    fn encoded(&mut self, text: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(ENCODED_CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (chunk, tail) = rest.split_at(cut);
            self.token(&format!("=?utf-8?b?{}?=", b64.encode(chunk)));
            rest = tail;
        }
    }

    /// Unstructured text (Subject): plain words as they are, and each run of words
    /// that cannot be written plainly (non-ASCII, too long, or looking like an encoded
    /// word) as encoded words. Whitespace runs and control characters become one space.
    fn unstructured(&mut self, text: &str) {
        let plain = |w: &str| {
            w.len() <= MAX_TOKEN && w.bytes().all(|b| b.is_ascii_graphic()) && !w.contains("=?")
        };
        let mut run = String::new();
        for word in text
            .split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|w| !w.is_empty())
        {
            if plain(word) {
                if !run.is_empty() {
                    self.encoded(&run);
                    run.clear();
                }
                self.token(word);
            } else {
                // The space between two encoded words vanishes when decoded, so it
                // goes inside the run.
                if !run.is_empty() {
                    run.push(' ');
                }
                run.push_str(word);
            }
        }
        if !run.is_empty() {
            self.encoded(&run);
        }
    }

    /// A display name (RFC 5322 phrase): plain ASCII as atoms, or as a quoted string
    /// when it holds specials such as `,` or `(`; a non-ASCII (or huge) name as
    /// encoded words.
    fn phrase(&mut self, name: &str) {
        let words: Vec<&str> = name.split(' ').filter(|w| !w.is_empty()).collect();
        let ascii = words
            .iter()
            .all(|w| w.len() <= MAX_TOKEN && w.bytes().all(|b| b.is_ascii_graphic()));
        if !ascii || words.iter().any(|w| w.contains("=?")) {
            return self.encoded(&words.join(" "));
        }
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        if words.iter().all(|w| w.bytes().all(atext)) {
            for w in words {
                self.token(w);
            }
            return;
        }
        // A quoted string may be folded at its spaces.
        let last = words.len() - 1;
        for (i, w) in words.iter().enumerate() {
            let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
            let open = if i == 0 { "\"" } else { "" };
            let close = if i == last { "\"" } else { "" };
            self.token(&format!("{open}{escaped}{close}"));
        }
    }

    fn end(self) {
        if self.first {
            // An empty value is still a valid field.
            self.out.push(b' ');
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A value we built ourselves (URL, Message-ID) must still never break a header:
/// anything outside visible ASCII is dropped.
fn header_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.chars().filter(char::is_ascii_graphic).collect())
    }
}

/// Quoted-printable (RFC 2045) with CRLF line ends, ending at a line boundary: a hard
/// break if the input ends with a newline, else a soft break `=\r\n`. A `.` that starts
/// a line is encoded, so the output is safe in SMTP DATA as is.
pub fn qp_encode(input: &[u8], out: &mut Vec<u8>) {
    let col = qp_encode_from(input, 0, out);
    soft_break(col, out);
}

/// Ends the current line with a soft break, if it has anything on it.
fn soft_break(col: usize, out: &mut Vec<u8>) {
    if col > 0 {
        out.extend_from_slice(b"=\r\n");
    }
}

/// Encodes `input` as if the current output line already held `col` characters;
/// returns the column where the output ends (no break is added at the end; a space or
/// tab at the very end is encoded, as the line may end there).
fn qp_encode_from(input: &[u8], mut col: usize, out: &mut Vec<u8>) -> usize {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const MAX: usize = 75; // characters before the soft break's `=`
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'\n' || (b == b'\r' && input.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let line_may_end = match input.get(i + 1) {
            None => true,
            Some(b'\n') => true,
            Some(b'\r') => input.get(i + 2) == Some(&b'\n'),
            _ => false,
        };
        let mut literal = match b {
            b'=' => false,
            b' ' | b'\t' => !line_may_end,
            33..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        if col + width > MAX {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if b == b'.' && col == 0 {
            literal = false;
        }
        if literal {
            out.push(b);
            col += 1;
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            col += 3;
        }
        i += 1;
    }
    col
}

/// Decodes quoted-printable (for tests and checks).
pub fn qp_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < input.len() {
        match input[i] {
            b'=' if input.get(i + 1) == Some(&b'\r') && input.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' => match (
                input.get(i + 1).and_then(|&c| hex(c)),
                input.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.push(b'\n');
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personalize::marker;
    use proptest::prelude::*;

    fn env() -> Envelope {
        Envelope {
            from: "The Brief <brief@news.example.org>".into(),
            reply_to: Some("editors@news.example.org".into()),
            list_name: "The Brief".into(),
            list_id: "the-brief.news.example.org".into(),
            date: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            columns: vec!["city".into()],
        }
    }

    fn parts(subject: &str) -> EditionParts {
        EditionParts {
            subject: subject.into(),
            html: format!(
                "<p>Hi {} from {}</p>\n.<a href=\"{}\">unsubscribe</a>\n{}",
                marker("subscriber.name"),
                marker("subscriber.city"),
                marker("unsubscribe_url"),
                "x".repeat(200)
            ),
            text: format!(
                "Hi {} ({})\n.\n. dot line \nUnsubscribe: {}\n",
                marker("subscriber.name"),
                marker("subscriber.email"),
                marker("unsubscribe_url")
            ),
        }
    }

    fn personal<'a>(name: &'a str, cols: &'a [String]) -> Personal<'a> {
        Personal {
            email: "ann@example.org",
            name,
            columns: cols,
            unsubscribe_url: "https://news.example.org/brief/u/TOKEN?a=1&b=2",
            preferences_url: "https://news.example.org/brief/p/TOKEN",
            unsubscribe_mailto: Some(
                "mailto:unsubscribe@news.example.org?subject=unsubscribe-TOKEN",
            ),
            message_id: "<abc@news.example.org>",
        }
    }

    /// Splits a message into its headers (unfolded) and the decoded text and HTML parts.
    fn parse(msg: &[u8]) -> (Vec<(String, String)>, String, String) {
        let s = String::from_utf8(msg.to_vec()).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().1.push_str(line);
            } else {
                let (k, v) = line.split_once(": ").unwrap();
                headers.push((k.to_string(), v.to_string()));
            }
        }
        let sep = format!("--{BOUNDARY}");
        let parts: Vec<&str> = body.split(&sep).collect();
        assert_eq!(parts.len(), 4, "{body}");
        assert_eq!(parts[3], "--\r\n");
        let decode = |p: &str| {
            let (_, content) = p.split_once("\r\n\r\n").unwrap();
            let content = content.strip_suffix("\r\n").unwrap();
            String::from_utf8(qp_decode(content.as_bytes())).unwrap()
        };
        (headers, decode(parts[1]), decode(parts[2]))
    }

    #[test]
    fn message_parses_back_to_the_personalized_render() {
        let e = env();
        let p =
            parts("Édition spéciale: a very long subject line that will need folding somewhere");
        let prepared = Prepared::new(&e, &p).unwrap();
        let cols = vec!["Gent & <Co>".to_string()];
        let who = personal("Zoë \"Z\" Ångström", &cols);
        let mut r = Rendered::default();
        prepared.render(&who, &mut r);
        let bytes = prepared.to_bytes(&r);
        // DATA-safe and 7-bit.
        assert!(bytes.is_ascii());
        let body_at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        for line in bytes[body_at..].split(|&b| b == b'\n') {
            assert!(
                !line.starts_with(b"."),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert!(line.len() <= 78, "{:?}", String::from_utf8_lossy(line));
        }
        let (headers, text, html) = parse(&bytes);
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "From",
                "Reply-To",
                "Subject",
                "Date",
                "List-Id",
                "Message-ID",
                "To",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
                "MIME-Version",
                "Content-Type"
            ]
        );
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("Message-ID"), "<abc@news.example.org>");
        assert_eq!(get("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
        assert_eq!(
            get("List-Unsubscribe"),
            "<https://news.example.org/brief/u/TOKEN?a=1&b=2>, <mailto:unsubscribe@news.example.org?subject=unsubscribe-TOKEN>"
        );
        assert_eq!(get("List-Id"), "The Brief <the-brief.news.example.org>");
        assert!(get("To").ends_with("<ann@example.org>"), "{}", get("To"));
        assert!(get("Subject").starts_with("=?utf-8?"), "{}", get("Subject"));
        let values = [
            "https://news.example.org/brief/u/TOKEN?a=1&b=2",
            "ann@example.org",
            who.name,
            &cols[0],
        ];
        let render = |src: &str, esc| {
            let t = Template::parse(src);
            let v: Vec<&str> = t
                .fields()
                .iter()
                .map(|f| match f.as_str() {
                    "unsubscribe_url" => values[0],
                    "subscriber.email" => values[1],
                    "subscriber.name" => values[2],
                    _ => values[3],
                })
                .collect();
            t.render(&v, esc)
        };
        assert_eq!(text, render(&p.text, Escape::None));
        assert_eq!(html, render(&p.html, Escape::Html));
    }

    #[test]
    fn qp_round_trips_and_limits_lines() {
        let input = "a=b\tc \n.start\r\n  \n".to_string() + &"é".repeat(100) + ".";
        let mut out = Vec::new();
        qp_encode(input.as_bytes(), &mut out);
        assert!(out.ends_with(b"=\r\n"));
        assert_eq!(
            String::from_utf8(qp_decode(&out)).unwrap(),
            input.replace("\r\n", "\n")
        );
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= 77);
            assert!(!line.starts_with(b"."));
        }
    }

    #[test]
    fn encoded_words_hold_whole_characters_and_decode_to_the_name() {
        let name = "Zoë 東京 Ångström ".repeat(20) + &"é".repeat(100);
        let mut out = Vec::new();
        mailbox_field(&mut out, "To", Some(&name), "zoe@example.org");
        let field = String::from_utf8(out).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut decoded = Vec::new();
        for line in field.trim_end().split("\r\n") {
            assert!(line.len() <= 78, "{line}");
            for word in line.split(' ').filter(|w| w.starts_with("=?")) {
                let payload = word
                    .strip_prefix("=?utf-8?b?")
                    .and_then(|w| w.strip_suffix("?="))
                    .unwrap();
                assert!(word.len() <= 75);
                let bytes = b64.decode(payload).unwrap();
                // Each encoded word is valid UTF-8 on its own.
                assert!(std::str::from_utf8(&bytes).is_ok(), "{word}");
                decoded.extend_from_slice(&bytes);
            }
        }
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            name.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(field.ends_with(" <zoe@example.org>\r\n"), "{field}");
    }

    #[test]
    fn list_unsubscribe_is_folded_between_its_uris() {
        let mut out = Vec::new();
        personal_headers(&personal("Ann", &[]), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains(
                "List-Unsubscribe: <https://news.example.org/brief/u/TOKEN?a=1&b=2>,\r\n <mailto:"
            ),
            "{s}"
        );
        assert!(s.contains("To: Ann <ann@example.org>\r\n"), "{s}");
    }

    proptest! {
        #[test]
        fn any_name_or_subject_builds_without_extra_headers(name in any::<String>(), subject in any::<String>(), city in any::<String>()) {
            let prepared = Prepared::new(&env(), &parts(&subject)).unwrap();
            let cols = vec![city];
            let mut r = Rendered::default();
            prepared.render(&personal(&name, &cols), &mut r);
            let bytes = prepared.to_bytes(&r);
            prop_assert!(bytes.is_ascii());
            let s = String::from_utf8(bytes).unwrap();
            let head = s.split_once("\r\n\r\n").unwrap().0;
            let names: Vec<&str> = head
                .split("\r\n")
                .filter(|l| !l.starts_with([' ', '\t']))
                .map(|l| l.split_once(':').map_or(l, |x| x.0))
                .collect();
            prop_assert_eq!(names.len(), 11, "{}", head);
            prop_assert!(!head.contains("\r\n\r\n"));
            prop_assert!(head.split("\r\n").all(|l| l.len() <= 998), "{}", head);
            prop_assert!(!s.split("\r\n").any(|l| l.starts_with('.')));
        }
    }
}
