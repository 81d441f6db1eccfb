//! The bounce and complaint engine: what comes back after the relay said 250.
//!
//! One event model for every message that arrives at the return path: a
//! [`Kind`] (`hard`, `soft`, `complaint`, `autoreply`, `unrecognized`) and a
//! [`Finding`] per recipient of a report (or one for a message that is no report),
//! plus the [`Hints`] that attribute it to a send of this newsletter.
//!
//! - [`rules`]: the classification table (enhanced status code first, reply text
//!   second); [`classify_smtp_reply`] gives the sender the same table for a
//!   synchronous refusal.
//! - [`parse`]: RFC 3464 DSNs, RFC 5965 ARF complaints, RFC 3834 auto-replies and the
//!   plain-text bounces of real MTAs, on the `mail-parser` crate.
//! - [`mailbox`]: streaming readers for a Maildir and an mbox, one bounded message at
//!   a time, and the Maildir moves (`new/` → `cur/`, poison → `.brief-rejected/`).
//! - [`policy`]: `policy::attribute` (which send a report belongs to) and
//!   `policy::apply(&Store, &Policy, &Event) -> Applied`, the one function that
//!   counts an event and suppresses past the `[bounces]` thresholds — for
//!   `brief bounces`, provider webhooks and refusals at send time alike.
//!
//! # Wiring `brief bounces` (for the command, the policy and the store)
//!
//! ```no_run
//! use brief::bounce::{self, mailbox::{Maildir, Mbox}};
//! # fn main() -> anyhow::Result<()> {
//! let maildir = Maildir::open("bounces".as_ref())?;
//! for item in maildir.new_messages()? {
//!     let msg = item?; // an I/O error on one file: report it and go on
//!     let report = bounce::read_report(&msg.raw, msg.truncated);
//!     for finding in &report.findings {
//!         // 1. attribute: report.hints.verp_token (verify it), then
//!         //    report.hints.message_ids (brief's keyed Message-IDs), then
//!         //    report.hints.envid, then finding.recipient / finding.original_recipient
//!         //    against recent journal rows;
//!         // 2. print finding.to_json_line(&msg.source, edition, applied);
//!         // 3. collect what to apply; after the whole batch, ONE short transaction.
//!     }
//!     maildir.mark_processed(&msg)?; // not with --dry-run
//! }
//! let mut mbox = Mbox::open("bounces.mbox".as_ref())?;
//! while let Some(msg) = mbox.next_message()? {
//!     let _ = bounce::read_report(&msg.raw, msg.truncated); // source is "FILE#n"
//! }
//! # Ok(()) }
//! ```
//!
//! Every `hard` or `soft` finding has a `status` (from the report, else from the
//! reply code: 5.0.0 / 4.0.0). Parsing never panics and never fails: a message that
//! cannot be read yields one `unrecognized` finding whose `diagnostic` says why.
//! Work per message is bounded ([`mailbox::MAX_MESSAGE`], text scanned up to
//! [`parse::MAX_TEXT`]), so a mailbox is processed in time linear in its size.

pub mod mailbox;
pub mod parse;
pub mod policy;
pub mod rules;

pub use parse::read_report;
pub use rules::{classify, classify_smtp_reply};

use serde::Serialize;

/// What a returned message says about one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The address will never accept mail (user or domain unknown, moved).
    Hard,
    /// Failed or late for any other reason (full, too large, policy, spam block,
    /// greylisting, disabled, expired, delayed, "user unknown" after DATA).
    Soft,
    /// An abuse report (RFC 5965 ARF) or a provider's complaint notice.
    Complaint,
    /// An RFC 3834 auto-reply or vacation message: never suppress.
    Autoreply,
    /// Anything else, success notices included.
    Unrecognized,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Complaint => "complaint",
            Kind::Autoreply => "autoreply",
            Kind::Unrecognized => "unrecognized",
        }
    }
}

/// One recipient's outcome in a returned message (or the one finding of a message
/// that is no report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// The bare address (`Final-Recipient`, else what the text names), lowercased
    /// domain untouched.
    pub recipient: Option<String>,
    /// `Original-Recipient` (RFC 3464), when the report has one.
    pub original_recipient: Option<String>,
    /// A d.d.d code; always set for `hard` and `soft`.
    pub status: Option<String>,
    /// The DSN `Action` (`failed`, `delayed`, `delivered`…), `failed` for a
    /// plain-text bounce, `None` otherwise.
    pub action: Option<String>,
    /// The remote server's words (`Diagnostic-Code` or the bounce text's reply line),
    /// or why the message was not understood.
    pub diagnostic: Option<String>,
}

/// What attributes a returned message to one send: for the caller to check, in this
/// order, against its tokens and journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// The `TOKEN` of a VERP address `local+TOKEN@domain` that the report came back to
    /// (first of `Delivered-To`, `X-Original-To`, `Envelope-To`, `To`). Not verified.
    pub verp_token: Option<String>,
    /// Message-IDs of the returned message (without `<>`), from text/rfc822-headers,
    /// message/rfc822, or quoted in the body; the bounce's own Message-ID excluded.
    pub message_ids: Vec<String>,
    /// `Original-Envelope-Id` (RFC 3464), the ENVID brief asked for (RFC 3461).
    pub envid: Option<String>,
}

/// Everything read from one returned message: at least one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    pub findings: Vec<Finding>,
    pub hints: Hints,
}

impl Finding {
    /// The JSON Lines object of `brief bounces --json` (issue 11 item 5), with the
    /// fields the caller knows: where the message came from, the edition it was
    /// attributed to, and whether the policy was applied.
    pub fn to_json_line(&self, source: &str, edition: Option<&str>, applied: bool) -> String {
        serde_json::json!({
            "source": source,
            "kind": self.kind,
            "recipient": self.recipient,
            "status": self.status,
            "action": self.action,
            "diagnostic": self.diagnostic,
            "edition": edition,
            "applied": applied,
        })
        .to_string()
    }
}
