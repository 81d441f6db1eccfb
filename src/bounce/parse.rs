//! Reading a returned message: RFC 3464 delivery reports, RFC 5965 abuse reports,
//! RFC 3834 auto-replies, and the plain-text bounces that real MTAs still send
//! (qmail, Exim, Sendmail, Exchange, Gmail, Yahoo…). MIME is `mail-parser`'s job;
//! what the parts mean is brief's.
//!
//! Every scan is linear and bounded: a message is parsed up to
//! [`super::mailbox::MAX_MESSAGE`] bytes and its human text read up to [`MAX_TEXT`].

use super::rules::{self, classify};
use super::{Finding, Hints, Kind, Returned};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use std::collections::HashSet;

/// How much of the human-readable text of a report is scanned.
pub const MAX_TEXT: usize = 64 * 1024;
/// Recipients read from one report; more is a forged or broken report.
const MAX_RECIPIENTS: usize = 100;
/// Returned Message-IDs kept per report.
const MAX_MESSAGE_IDS: usize = 8;
/// The longest diagnostic kept.
const MAX_DIAGNOSTIC: usize = 500;

/// Reads one returned message. Never fails: what cannot be read is one
/// `unrecognized` finding whose diagnostic says why. `truncated` says the mailbox
/// reader cut the message at its size bound (the report part comes first, so it is
/// still read).
pub fn read_report(raw: &[u8], truncated: bool) -> Returned {
    let raw = skip_preamble(&raw[..raw.len().min(super::mailbox::MAX_MESSAGE)]);
    let message = match MessageParser::default().parse(raw) {
        Some(m) if !m.headers().is_empty() => m,
        _ => {
            return unrecognized(
                Hints::default(),
                "not a mail message (no header fields)".into(),
            )
        }
    };
    let mut scan = Scan::default();
    scan.walk(&message);
    let mut hints = Hints {
        verp_token: verp_token(&message),
        envid: scan.envid.clone(),
        message_ids: Vec::new(),
    };
    let own_id = message.message_id().map(str::to_string);
    let quoted_ids = quoted_message_ids(&scan.text);
    for id in scan.returned_ids.iter().chain(quoted_ids.iter()) {
        if Some(id) != own_id.as_ref()
            && !hints.message_ids.contains(id)
            && hints.message_ids.len() < MAX_MESSAGE_IDS
        {
            hints.message_ids.push(id.clone());
        }
    }
    let mut findings = if let Some(feedback) = &scan.feedback {
        vec![complaint(feedback, &scan)]
    } else if !scan.recipients.is_empty() {
        dsn_findings(&scan)
    } else if looks_like_bounce(&message, &scan.text) {
        vec![plain_text_bounce(&message, &scan.text)]
    } else if is_autoreply(&message) {
        vec![Finding {
            kind: Kind::Autoreply,
            recipient: first_address(message.header_raw("From").unwrap_or("")),
            original_recipient: None,
            status: None,
            action: None,
            diagnostic: message.subject().map(|s| clip(s.trim())),
        }]
    } else {
        Vec::new()
    };
    if truncated {
        for f in &mut findings {
            f.diagnostic
                .get_or_insert_with(|| "message cut at the size bound".into());
        }
    }
    if findings.is_empty() {
        let why = if truncated {
            "no delivery report found (message cut at the size bound)"
        } else {
            "no delivery report, complaint or auto-reply found"
        };
        return unrecognized(hints, why.into());
    }
    hints.message_ids.shrink_to_fit();
    Returned { findings, hints }
}

/// Blank lines and an mbox `From ` line before the header fields (a message saved
/// from a mail client) are not part of the message.
fn skip_preamble(mut raw: &[u8]) -> &[u8] {
    loop {
        let end = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| i + 1);
        let line = &raw[..end];
        let blank = line.iter().all(u8::is_ascii_whitespace);
        if end == 0 || !(blank || line.starts_with(b"From ")) {
            return raw;
        }
        raw = &raw[end..];
    }
}

fn unrecognized(hints: Hints, why: String) -> Returned {
    Returned {
        findings: vec![Finding {
            kind: Kind::Unrecognized,
            recipient: None,
            original_recipient: None,
            status: None,
            action: None,
            diagnostic: Some(why),
        }],
        hints,
    }
}

/// One per-recipient block of a `message/delivery-status` part.
#[derive(Debug, Default)]
struct RecipientFields {
    final_recipient: Option<String>,
    original_recipient: Option<String>,
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
}

/// What the walk over a message's parts collected.
#[derive(Default)]
struct Scan {
    /// The human-readable text (text/plain parts of the report), bounded.
    text: String,
    recipients: Vec<RecipientFields>,
    envid: Option<String>,
    /// `message/feedback-report` fields, lowercased names.
    feedback: Option<Vec<(String, String)>>,
    /// Message-IDs of returned messages and returned headers.
    returned_ids: Vec<String>,
    /// The `To` of a returned message: who a complaint is about.
    returned_to: Option<String>,
    /// A forwarded report has been read (one level only).
    nested: bool,
}

impl Scan {
    fn walk(&mut self, message: &Message) {
        let body_parts: HashSet<u32> = message
            .text_body
            .iter()
            .chain(&message.html_body)
            .copied()
            .collect();
        for (index, part) in message.parts.iter().enumerate() {
            let (ctype, subtype) = part
                .content_type()
                .map(|c| {
                    (
                        c.ctype().to_ascii_lowercase(),
                        c.subtype().unwrap_or("").to_ascii_lowercase(),
                    )
                })
                .unwrap_or_default();
            match (&part.body, ctype.as_str(), subtype.as_str()) {
                (PartType::Message(returned), _, _) => {
                    // A report forwarded as an attachment: read the report inside.
                    let is_report = returned.content_type().is_some_and(|c| {
                        c.ctype().eq_ignore_ascii_case("multipart")
                            && c.subtype()
                                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                    });
                    if is_report
                        && self.recipients.is_empty()
                        && self.feedback.is_none()
                        && !self.nested
                    {
                        self.nested = true;
                        self.walk(returned);
                        continue;
                    }
                    if let Some(id) = returned.message_id() {
                        self.returned_ids.push(id.to_string());
                    }
                    if self.returned_to.is_none() {
                        self.returned_to = returned.header_raw("To").and_then(first_address);
                    }
                }
                (_, "message", "delivery-status" | "global-delivery-status") => {
                    self.delivery_status(&String::from_utf8_lossy(bounded(part.contents())));
                }
                (_, "message", "feedback-report") => {
                    let fields = header_blocks(&String::from_utf8_lossy(bounded(part.contents())))
                        .into_iter()
                        .flatten()
                        .collect();
                    self.feedback = Some(fields);
                }
                (_, "text" | "message", "rfc822-headers" | "global-headers") => {
                    let headers = String::from_utf8_lossy(bounded(part.contents()));
                    for (name, value) in header_blocks(&headers).into_iter().flatten() {
                        match name.as_str() {
                            "message-id" => self.returned_ids.push(strip_angle(&value)),
                            "to" if self.returned_to.is_none() => {
                                self.returned_to = first_address(&value)
                            }
                            _ => {}
                        }
                    }
                }
                (PartType::Text(text), _, _)
                    if self.text.len() < MAX_TEXT
                        && (index == 0 || body_parts.contains(&(index as u32))) =>
                {
                    let room = MAX_TEXT - self.text.len();
                    self.text.push_str(prefix(text, room));
                    self.text.push('\n');
                }
                (PartType::Html(html), _, _)
                    if self.text.len() < MAX_TEXT
                        && (index == 0 || body_parts.contains(&(index as u32))) =>
                {
                    let room = MAX_TEXT - self.text.len();
                    self.text
                        .push_str(prefix(&strip_tags(prefix(html, MAX_TEXT)), room));
                    self.text.push('\n');
                }
                _ => {}
            }
        }
    }

    fn delivery_status(&mut self, text: &str) {
        for block in header_blocks(text) {
            let mut fields = RecipientFields::default();
            let mut is_recipient = false;
            for (name, value) in block {
                match name.as_str() {
                    "original-envelope-id" => self.envid = Some(value.trim().to_string()),
                    "final-recipient" | "x-actual-recipient" => {
                        is_recipient = true;
                        if fields.final_recipient.is_none() || name == "final-recipient" {
                            fields.final_recipient = typed_address(&value);
                        }
                    }
                    "original-recipient" => {
                        is_recipient = true;
                        fields.original_recipient = typed_address(&value);
                    }
                    "action" => {
                        is_recipient = true;
                        fields.action = normalize_action(&value);
                    }
                    "status" => {
                        is_recipient = true;
                        fields.status = enhanced_code(&value);
                    }
                    "diagnostic-code" => {
                        let text = value.split_once(';').map_or(value.as_str(), |(_, t)| t);
                        fields.diagnostic = Some(clip(&collapse_space(text)));
                    }
                    _ => {}
                }
            }
            if is_recipient && self.recipients.len() < MAX_RECIPIENTS {
                self.recipients.push(fields);
            }
        }
    }
}

fn dsn_findings(scan: &Scan) -> Vec<Finding> {
    let lower_text = scan.text.to_lowercase();
    scan.recipients
        .iter()
        .map(|r| {
            let recipient = r.final_recipient.clone().or(r.original_recipient.clone());
            // The human text names the recipient with what its server said, and
            // Postfix says there whether it was "in reply to end of DATA command".
            let paragraph = recipient
                .as_deref()
                .and_then(|a| lower_text.find(&a.to_lowercase()))
                .map(|at| prefix(&lower_text[at..], 600))
                .unwrap_or("");
            let diagnostic = r
                .diagnostic
                .clone()
                .filter(|d| !d.is_empty())
                .or_else(|| reason_lines(&scan.text));
            let text = diagnostic.as_deref().unwrap_or(paragraph);
            let after_data = rules::text_says_after_data(paragraph);
            let status = r
                .status
                .clone()
                .or_else(|| diagnostic.as_deref().and_then(status_in_text))
                .or_else(|| match r.action.as_deref() {
                    Some("failed") => Some("5.0.0".into()),
                    Some("delayed") => Some("4.0.0".into()),
                    _ => None,
                });
            let kind = classify(r.action.as_deref(), status.as_deref(), text, after_data);
            let status = match kind {
                Kind::Hard | Kind::Soft => status
                    .or_else(|| Some(if kind == Kind::Hard { "5.0.0" } else { "4.0.0" }.into())),
                _ => status,
            };
            Finding {
                kind,
                recipient,
                original_recipient: r.original_recipient.clone(),
                status,
                action: r.action.clone(),
                diagnostic,
            }
        })
        .collect()
}

fn complaint(fields: &[(String, String)], scan: &Scan) -> Finding {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let feedback_type = field("feedback-type").unwrap_or_else(|| "abuse".into());
    // DMARC failure reports and "not spam" notices are reports, not complaints.
    let kind = match feedback_type.to_ascii_lowercase().as_str() {
        "auth-failure" | "not-spam" => Kind::Unrecognized,
        _ => Kind::Complaint,
    };
    let recipient = field("original-rcpt-to")
        .as_deref()
        .and_then(first_address)
        .or(scan.returned_to.clone());
    Finding {
        kind,
        recipient,
        original_recipient: None,
        status: None,
        action: None,
        diagnostic: Some(clip(&format!("Feedback-Type: {feedback_type}"))),
    }
}

/// A bounce without a delivery-status part: the MTA's own words.
fn plain_text_bounce(message: &Message, text: &str) -> Finding {
    let report = report_part(text);
    let lower = report.to_lowercase();
    let subject = message.subject().unwrap_or("").to_lowercase();
    let delayed = [
        "delayed",
        "(delay)",
        "still being retried",
        "not yet been delivered",
        "will retry",
    ]
    .iter()
    .any(|p| subject.contains(p))
        || [
            "has not yet been delivered",
            "will continue trying",
            "will keep trying",
            "still trying",
            "message is delayed",
            "is being retried",
            "has been delayed",
            "attempts will continue",
            "will continue to try",
            "has been postponed",
        ]
        .iter()
        .any(|p| lower.contains(p));
    let recipient = message
        .header_raw("X-Failed-Recipients")
        .and_then(first_address)
        .or_else(|| report_recipient(message, report));
    let diagnostic = reason_lines(report);
    let text = diagnostic.as_deref().unwrap_or(report);
    let status = diagnostic
        .as_deref()
        .and_then(status_in_text)
        .or_else(|| status_in_text(report));
    let action = if delayed { "delayed" } else { "failed" };
    let after_data = rules::text_says_after_data(&lower);
    let kind = classify(Some(action), status.as_deref(), text, after_data);
    let status = status.or_else(|| Some(if delayed { "4.0.0" } else { "5.0.0" }.into()));
    Finding {
        kind,
        recipient,
        original_recipient: None,
        status,
        action: Some(action.into()),
        diagnostic,
    }
}

/// The bounce's own text, without the returned message that many MTAs quote after it.
fn report_part(text: &str) -> &str {
    const MARKERS: &[&str] = &[
        "------ this is a copy of the message",
        "--- below this line is a copy of the message",
        "----- original message",
        "-----original message",
        "original message follows",
        "of your original message follow",
        "\nreceived: ",
        "\nreturn-path: ",
        "--- enclosed are the original headers",
        "----- the header of the original message",
        "----- message header follows",
        "----- unsent message follows",
        "--------unsent message below",
    ];
    let lower = text.to_ascii_lowercase();
    let cut = MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .filter(|&at| at > 0)
        .min()
        .unwrap_or(text.len());
    // `to_ascii_lowercase` keeps byte offsets.
    &text[..cut]
}

/// The lines of a report that give a reason: a reply code, an enhanced status, or a
/// phrase of the rules table; the first three, joined.
fn reason_lines(report: &str) -> Option<String> {
    let mut picked: Vec<&str> = Vec::new();
    for line in report.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lower = line.to_lowercase();
        let has_code = reply_code(line).is_some() || enhanced_code(line).is_some();
        if has_code || rules::text_says_hard(&lower) || says_soft_reason(&lower) {
            picked.push(line);
            if picked.len() == 3 {
                break;
            }
        }
    }
    (!picked.is_empty()).then(|| clip(&picked.join(" ")))
}

fn says_soft_reason(lower: &str) -> bool {
    [
        "quota",
        "mailbox full",
        "mailbox is full",
        "too large",
        "greylist",
        "disabled",
        "suspended",
        "blocked",
        "spam",
        "rejected",
        "refused",
        "denied",
        "expired",
        "timed out",
        "timeout",
        "unavailable",
        "not allowed",
        "deferred",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// Whether a message without a delivery-status part is a bounce at all.
fn looks_like_bounce(message: &Message, text: &str) -> bool {
    if message.header_raw("X-Failed-Recipients").is_some() {
        return true;
    }
    let from = message.header_raw("From").unwrap_or("").to_lowercase();
    let from_daemon = [
        "mailer-daemon",
        "postmaster",
        "mail delivery",
        "mailer_daemon",
        "mail administrator",
        "mdaemon",
        "mailadmin",
    ]
    .iter()
    .any(|p| from.contains(p));
    let subject = message.subject().unwrap_or("").to_lowercase();
    let bounce_subject = [
        "undeliver",
        "undelivered",
        "delivery status",
        "delivery failure",
        "delivery failed",
        "failure notice",
        "returned mail",
        "mail delivery failed",
        "delivery notification",
        "nondeliverable",
        "non-deliverable",
        "non-delivery",
        "could not be delivered",
        "delivery problem",
        "failed delivery",
        "mail system error",
        "not delivered",
        "delivery report",
        "returned to sender",
        "delayed mail",
        "delivery has failed",
        "unable to deliver",
        "message not delivered",
        "rejected",
        "bounce",
        "mail failure",
        "error sending",
        "permanent error",
    ]
    .iter()
    .any(|p| subject.contains(p));
    if from_daemon || bounce_subject {
        return true;
    }
    let lower = prefix(text, 4096).to_lowercase();
    [
        "could not be delivered",
        "couldn't be delivered",
        "permanent error",
        "permanent fatal error",
        "delivery to the following recipient",
        "was not delivered",
        "undeliverable",
        "this is the mail system at",
        "delivery has failed",
        "unable to deliver",
        "the following addresses had",
        "failed to deliver",
        "message you sent could not",
        "returned to sender",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// RFC 3834 auto-replies and the vacation responders that do not follow it.
fn is_autoreply(message: &Message) -> bool {
    let raw = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if raw("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if [
        "X-Autoreply",
        "X-Autorespond",
        "X-Autoresponder",
        "X-Vacation",
    ]
    .iter()
    .any(|h| message.header_raw(*h).is_some())
    {
        return true;
    }
    if raw("Precedence").is_some_and(|p| p == "auto_reply") {
        return true;
    }
    let subject = message.subject().unwrap_or("").trim().to_lowercase();
    [
        "out of office",
        "out of the office",
        "auto:",
        "automatic reply",
        "autoreply",
        "auto-reply",
        "auto reply",
        "auto response",
        "autoresponse",
        "auto-response",
        "vacation",
        "away from",
        "abwesenheit",
        "réponse automatique",
        "respuesta automática",
        "on leave",
        "i am away",
    ]
    .iter()
    .any(|p| subject.contains(p))
}

/// The VERP token of the address the report came back to: `local+TOKEN@domain`.
fn verp_token(message: &Message) -> Option<String> {
    ["Delivered-To", "X-Original-To", "Envelope-To", "To"]
        .iter()
        .filter_map(|h| message.header_raw(*h))
        .filter_map(first_address)
        .find_map(|addr| {
            let local = addr.rsplit_once('@')?.0;
            let token = local.split_once('+')?.1;
            (!token.is_empty()).then(|| token.to_string())
        })
}

/// The recipient a plain-text report names: the first address in it that is not
/// the bounce's own sender or receiver and not a mail system's.
fn report_recipient(message: &Message, report: &str) -> Option<String> {
    let own: Vec<String> = ["From", "To", "Delivered-To", "X-Original-To", "Return-Path"]
        .iter()
        .filter_map(|h| message.header_raw(*h))
        .filter_map(first_address)
        .map(|a| a.to_lowercase())
        .collect();
    addresses(report).into_iter().find(|a| {
        let lower = a.to_lowercase();
        let local = lower.split('@').next().unwrap_or("");
        !own.contains(&lower)
            && !["mailer-daemon", "postmaster", "mailer_daemon", "abuse"].contains(&local)
    })
}

/// Splits header-style text into blocks (separated by blank lines) of unfolded
/// `(lowercased name, value)` fields.
fn header_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                if value.len() < MAX_TEXT {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

/// `rfc822; user@example.org` → `user@example.org`.
fn typed_address(value: &str) -> Option<String> {
    let addr = value.split_once(';').map_or(value, |(_, a)| a);
    let addr = strip_angle(addr.trim());
    (addr.contains('@') && !addr.contains(char::is_whitespace)).then_some(addr)
}

fn normalize_action(value: &str) -> Option<String> {
    let word = value.split_whitespace().next()?.to_ascii_lowercase();
    Some(match word.as_str() {
        "failure" | "fail" => "failed".into(),
        "delay" => "delayed".into(),
        _ => word,
    })
}

fn strip_angle(value: &str) -> String {
    value
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// The first d.d.d code of class 2, 4 or 5 in a text, as a token of its own
/// (not part of a version number like `8.13.1/8.13.1` or `6.5.7638.1`).
pub(crate) fn enhanced_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_token = i == 0 || !(bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.');
        if starts_token && matches!(bytes[i], b'2' | b'4' | b'5') && bytes.get(i + 1) == Some(&b'.')
        {
            let mut j = i + 2;
            let subject_start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() && j - subject_start < 3 {
                j += 1;
            }
            if j > subject_start && bytes.get(j) == Some(&b'.') {
                let detail_start = j + 1;
                let mut k = detail_start;
                while k < bytes.len() && bytes[k].is_ascii_digit() && k - detail_start < 3 {
                    k += 1;
                }
                let ends_token = k == bytes.len()
                    || !(bytes[k].is_ascii_digit()
                        || bytes[k] == b'.' && bytes.get(k + 1).is_some_and(u8::is_ascii_digit));
                if k > detail_start && ends_token {
                    return Some(text[i..k].to_string());
                }
            }
        }
        i += 1;
    }
    None
}

/// A three-digit SMTP reply code (4xx or 5xx) standing alone in a text.
fn reply_code(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    for i in 0..bytes.len().saturating_sub(2) {
        let before_ok = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || matches!(bytes[i - 1], b'.' | b'-' | b'/' | b':' | b'#' | b'('));
        // `550-5.1.1` continues a reply; `480-624-2500` is a phone number.
        let continuation = bytes.get(i + 3) == Some(&b'-')
            && bytes.get(i + 4).is_some_and(u8::is_ascii_digit)
            && bytes.get(i + 5) == Some(&b'.');
        let after_ok = continuation || matches!(bytes.get(i + 3), None | Some(b' ' | b'\t' | b','));
        if before_ok
            && after_ok
            && matches!(bytes[i], b'4' | b'5')
            && bytes[i + 1].is_ascii_digit()
            && bytes[i + 2].is_ascii_digit()
        {
            return std::str::from_utf8(&bytes[i..i + 3]).ok()?.parse().ok();
        }
    }
    None
}

/// The status a text gives: its enhanced code (of class 4 or 5), else 5.0.0 / 4.0.0
/// from its reply code.
fn status_in_text(text: &str) -> Option<String> {
    if let Some(code) = enhanced_code(text).filter(|c| !c.starts_with('2')) {
        return Some(code);
    }
    reply_code(text).map(|c| if c >= 500 { "5.0.0" } else { "4.0.0" }.into())
}

/// Message-IDs quoted in a body (`Message-ID: <…>` lines of returned headers).
fn quoted_message_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(['>', ' ', '\t']);
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("message-id")
                .then(|| strip_angle(value))
        })
        .filter(|id| id.contains('@'))
        .take(MAX_MESSAGE_IDS)
        .collect()
}

fn first_address(value: &str) -> Option<String> {
    addresses(value).into_iter().next()
}

/// The addresses in a text (`local@domain`), at most 50, in order. Linear: every byte
/// is looked at by at most one expansion to each side.
fn addresses(text: &str) -> Vec<String> {
    let local_ok = |b: u8| b.is_ascii_alphanumeric() || b"._%+-=!#$&'*/?^`{|}~".contains(&b);
    let domain_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let bytes = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut floor = 0;
    for (at, _) in text.match_indices('@') {
        if at < floor {
            continue;
        }
        let mut start = at;
        while start > floor && local_ok(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && domain_ok(bytes[end]) {
            end += 1;
        }
        floor = end;
        let local = text[start..at].trim_start_matches('.');
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        if !local.is_empty() && !domain.is_empty() && !domain.starts_with(['.', '-']) {
            let addr = format!("{local}@{domain}");
            if !out.contains(&addr) {
                out.push(addr);
                if out.len() == 50 {
                    break;
                }
            }
        }
    }
    out
}

fn bounded(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_TEXT)]
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn collapse_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(s: &str) -> String {
    prefix(
        &collapse_space(prefix(s, MAX_DIAGNOSTIC * 4)),
        MAX_DIAGNOSTIC,
    )
    .to_string()
}

/// HTML to text, roughly: enough to read an HTML-only bounce's words.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len().min(MAX_TEXT));
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push('\n');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
        if out.len() >= MAX_TEXT {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_status_codes_but_not_versions() {
        assert_eq!(
            enhanced_code("550 5.1.1 <a@b>: user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_code("Sendmail 8.13.1/8.13.1; (#5.1.1)").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_code("Exchange 6.5.7638.1 and 5.5.2653.19"), None);
        assert_eq!(
            enhanced_code("status 5.1.10 null MX").as_deref(),
            Some("5.1.10")
        );
        assert_eq!(reply_code("host said: 550 No such user"), Some(550));
        assert_eq!(reply_code("id 1550 and 5500"), None);
    }

    #[test]
    fn finds_addresses_linearly() {
        assert_eq!(addresses("<ann@example.org>: said"), ["ann@example.org"]);
        assert!(addresses(&"@".repeat(100_000)).is_empty());
        assert_eq!(addresses(&"a@".repeat(1000)).len(), 1);
    }
}
