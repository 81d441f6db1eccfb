//! brief's classification rules, in one table: the enhanced status code first, the
//! reply text second. A wrong `hard` costs the newsroom a reader, so every doubt is
//! `soft`: only a code or a phrase that says "this address will never accept mail"
//! makes a bounce hard, and nothing a server says after DATA does (content filters
//! answer "user unknown" to mail they do not like).

use super::Kind;

/// Enhanced status codes (RFC 3463) that mean the address itself is dead.
const HARD_CODES: &[&str] = &[
    "5.1.1",  // bad destination mailbox address
    "5.1.2",  // bad destination system address (no such domain)
    "5.1.3",  // bad destination mailbox address syntax
    "5.1.6",  // destination mailbox has moved, no forwarding address
    "5.1.10", // recipient address has a null MX (RFC 7505)
    "5.4.4",  // unable to route (no MX, no A)
];

/// Codes that are failures, but not of the address: the sender, the content, the
/// mailbox's state. Always soft, whatever the text says.
const SOFT_CODE_PREFIXES: &[&str] = &[
    "5.2.", // mailbox full, disabled, too large
    "5.3.", // destination system full, not accepting messages, too large
    "5.6.", // content / conversion
    "5.7.", // policy, spam and authentication blocks: the sender's problem
    "5.4.6", "5.4.7", // routing loop, delivery time expired
];

/// Phrases that make a failure soft even next to a hard code or a hard phrase: the
/// mailbox exists but is full, paused or refuses this sender.
const SOFT_PHRASES: &[&str] = &[
    "quota",
    "mailbox full",
    "mailbox is full",
    "box is full",
    "mail box full",
    "full mailbox",
    "storage",
    "insufficient space",
    "too large",
    "too big",
    "exceeds",
    "message size",
    "greylist",
    "graylist",
    "try again",
    "temporar",
    "disabled",
    "suspended",
    "inactive",
    "locked",
    "blocked",
    "spam",
    "blacklist",
    "blocklist",
    "listed at",
    "reputation",
    "policy",
    "dmarc",
    "spf",
    "dkim",
    "authenticat",
    "relay access denied",
    "relaying denied",
    "unable to relay",
    "relay not permitted",
    "not permitted to relay",
    "relaying not allowed",
    "relay denied",
    "rate limit",
    "too many",
    "timed out",
    "timeout",
    "connection refused",
    "accepting mail from",
    "accept mail from",
    "loop",
    "deferred",
    "delayed",
    "will be retried",
    "still trying",
    "will continue",
    "postponed",
];

/// Phrases that say the address will never accept mail (user or domain unknown, moved).
const HARD_PHRASES: &[&str] = &[
    "user unknown",
    "unknown user",
    "user not found",
    "unknown recipient",
    "recipient unknown",
    "recipient not found",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "no such address",
    "no such person",
    "no mailbox",
    "mailbox not found",
    "mailbox does not exist",
    "mailbox unknown",
    "address unknown",
    "unknown address",
    "address does not exist",
    "does not exist",
    "doesn't exist",
    "doesn't have a",
    "not a valid mailbox",
    "invalid mailbox",
    "invalid recipient",
    "invalid address",
    "bad address",
    "unknown local part",
    "unknown local-part",
    "user doesn't",
    "not our customer",
    "not known here",
    "unrouteable address",
    "unrouteable mail domain",
    "unroutable mail domain",
    "nonexistent user",
    "user not known",
    "not a valid user",
    "invalid final delivery userid",
    "final email delivery point",
    "no matches to nameserver query",
    "n'existe pas",
    "non-existent user",
    "unroutable address",
    "no such domain",
    "domain not found",
    "unknown domain",
    "domain does not exist",
    "host not found",
    "host unknown",
    "unknown host",
    "host or domain name not found",
    "name or service not known",
    "no longer",
    "has moved",
    "not accepting mail",
    "does not accept mail",
    "not listed in",
    "unknown or illegal alias",
    "account has been deleted",
    "account is unavailable",
    "no account",
    "addressee unknown",
    "is not a valid",
    "not a known user",
    "recipient address rejected: user unknown",
    "name is not recognized",
];

/// The class of a status code: `2`, `4`, `5`, or `None` when it is no d.d.d code.
fn class(status: &str) -> Option<char> {
    let c = status.chars().next()?;
    matches!(c, '2' | '4' | '5').then_some(c)
}

fn contains_any(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| text.contains(p))
}

/// Whether the reply text says the address will never accept mail: a line with a
/// hard phrase and nothing on it that makes it soft.
pub fn text_says_hard(lower_text: &str) -> bool {
    lower_text
        .lines()
        .any(|line| contains_any(line, HARD_PHRASES) && !contains_any(line, SOFT_PHRASES))
}

/// Whether the text mentions that the failure happened after DATA (the content was
/// judged, not the address).
pub fn text_says_after_data(lower_text: &str) -> bool {
    contains_any(
        lower_text,
        &[
            "end of data",
            "after data",
            "after end of",
            "in reply to data",
            "after the data",
            "after message body",
        ],
    )
}

/// Classifies one recipient's outcome. `action` is the DSN Action (`failed`,
/// `delayed`, `delivered`…), `status` a d.d.d code, `text` the diagnostic (any
/// case), `after_data` whether the refusal answered the message body.
pub fn classify(action: Option<&str>, status: Option<&str>, text: &str, after_data: bool) -> Kind {
    let action = action.map(str::to_ascii_lowercase);
    let lower = text.to_lowercase();
    match action.as_deref() {
        Some("delivered" | "relayed" | "expanded") => return Kind::Unrecognized,
        Some("delayed") => return Kind::Soft,
        _ => {}
    }
    let after_data = after_data || text_says_after_data(&lower);
    match status.and_then(class) {
        Some('2') => return Kind::Unrecognized,
        Some('4') => return Kind::Soft,
        _ => {}
    }
    if after_data {
        return Kind::Soft;
    }
    if let Some(code) = status.filter(|s| class(s) == Some('5')) {
        if HARD_CODES.contains(&code) {
            return if contains_any(&lower, SOFT_PHRASES) && !contains_any(&lower, HARD_PHRASES) {
                Kind::Soft
            } else {
                Kind::Hard
            };
        }
        // A `.0` detail ("other or undefined") says nothing: the text decides.
        if !code.ends_with(".0") && SOFT_CODE_PREFIXES.iter().any(|p| code.starts_with(p)) {
            return Kind::Soft;
        }
    }
    if text_says_hard(&lower) {
        Kind::Hard
    } else {
        Kind::Soft
    }
}

/// A synchronous SMTP refusal at send time, through the same table (issue 11 item 2):
/// `code` is the reply code (550), `enhanced` the d.d.d code if the reply had one,
/// `text` the reply text, `after_data` whether it answered the final dot.
/// Returns `Hard` or `Soft` for 4xx/5xx, `Unrecognized` for a success code.
pub fn classify_smtp_reply(
    code: u16,
    enhanced: Option<&str>,
    text: &str,
    after_data: bool,
) -> Kind {
    if !(400..600).contains(&code) {
        return Kind::Unrecognized;
    }
    let basic = if code >= 500 { "5.0.0" } else { "4.0.0" };
    // A 4xx reply with a 5.x.x enhanced code (or the reverse) is temporary: the
    // reply code is what the server will do.
    let status = enhanced
        .filter(|e| e.starts_with(if code >= 500 { '5' } else { '4' }))
        .unwrap_or(basic);
    classify(Some("failed"), Some(status), text, after_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_first_then_text() {
        assert_eq!(
            classify(Some("failed"), Some("5.1.1"), "", false),
            Kind::Hard
        );
        assert_eq!(
            classify(Some("failed"), Some("5.2.2"), "user unknown", false),
            Kind::Soft
        );
        assert_eq!(
            classify(
                Some("failed"),
                Some("5.0.0"),
                "550 No such user here",
                false
            ),
            Kind::Hard
        );
        assert_eq!(
            classify(Some("failed"), Some("5.0.0"), "550 rejected", false),
            Kind::Soft
        );
        assert_eq!(
            classify(Some("failed"), Some("5.7.1"), "user unknown", false),
            Kind::Soft
        );
        assert_eq!(
            classify(Some("delayed"), Some("5.1.1"), "", false),
            Kind::Soft
        );
        assert_eq!(
            classify(Some("delivered"), Some("2.0.0"), "", false),
            Kind::Unrecognized
        );
        assert_eq!(
            classify(Some("failed"), Some("4.7.1"), "expired", false),
            Kind::Soft
        );
    }

    #[test]
    fn user_unknown_after_data_is_soft() {
        assert_eq!(
            classify(
                Some("failed"),
                Some("5.1.1"),
                "550 5.1.1 user unknown (in reply to end of DATA command)",
                false
            ),
            Kind::Soft
        );
        assert_eq!(
            classify_smtp_reply(550, Some("5.1.1"), "user unknown", true),
            Kind::Soft
        );
        assert_eq!(
            classify_smtp_reply(550, Some("5.1.1"), "user unknown", false),
            Kind::Hard
        );
    }

    #[test]
    fn smtp_replies() {
        assert_eq!(
            classify_smtp_reply(450, Some("4.2.0"), "greylisted", false),
            Kind::Soft
        );
        assert_eq!(
            classify_smtp_reply(
                550,
                None,
                "Requested action not taken: mailbox unavailable",
                false
            ),
            Kind::Soft
        );
        assert_eq!(
            classify_smtp_reply(550, None, "No such user", false),
            Kind::Hard
        );
        assert_eq!(
            classify_smtp_reply(451, Some("5.1.1"), "user unknown", false),
            Kind::Soft
        );
        assert_eq!(
            classify_smtp_reply(250, None, "ok", false),
            Kind::Unrecognized
        );
        assert_eq!(
            classify_smtp_reply(552, Some("5.1.1"), "mailbox disabled", false),
            Kind::Soft
        );
    }
}
