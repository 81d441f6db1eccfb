//! The `[bounces]` policy: one function, [`apply`], turns a classified event (from a
//! bounce mailbox, a provider's webhook, or a refusal at send time) into counts and,
//! past the thresholds, a suppression. [`attribute`] finds which send a returned
//! message belongs to.
//!
//! - `hard` and `complaint` count once per edition; the address is suppressed at
//!   `hard` (default 1) or `complaint` (default 1) editions.
//! - `soft` counts the editions in a row that bounced softly, newest first, until one
//!   that was accepted and did not bounce: `soft` (default 3) in a row suppress.
//! - `autoreply` and `unrecognized` never count.
//! - An event for an edition the journal never sent to that address changes nothing.
//! - Idempotent: an event is keyed by its `key` (a hash of the returned message plus
//!   the recipient), so the same message read twice counts once.
//! - A suppression made here has source `bounce` or `complaint`, the edition, and the
//!   status and diagnostic kept beside it; `brief resubscribe` lifts it and its past
//!   events stop counting.
//!
//! ```no_run
//! use brief::bounce::{policy, Kind};
//! # fn f(store: &brief::store::Store) -> anyhow::Result<()> {
//! let applied = policy::apply(store, &policy::Policy::default(), &policy::Event {
//!     kind: Kind::Complaint,
//!     address: "reader@example.org",
//!     edition: "2026-12-01",
//!     status: None,
//!     diagnostic: Some("abuse report from a provider"),
//!     key: "provider:ses:feedback-id-123:reader@example.org",
//! })?;
//! assert!(applied.counted() || !applied.counted());
//! # Ok(()) }
//! ```

use super::{Finding, Kind, Returned};
use crate::clock;
use crate::store::{BounceEvent, Store, Suppression, SuppressionReason, SuppressionSource};
use anyhow::Result;
use sha2::{Digest, Sha256};

/// The thresholds of `[bounces]` in brief.toml.
pub use crate::config::Bounces as Policy;

/// One classified event for one recipient of one edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: Kind,
    pub address: &'a str,
    pub edition: &'a str,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// Unique per returned message (or provider notice) and recipient.
    pub key: &'a str,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// An auto-reply or an unrecognized message: nothing to count.
    NotCounted,
    /// This edition never went to this address: ignored.
    NotSent,
    /// This event was applied before.
    Duplicate,
    /// Counted, below the threshold (or the address was already suppressed).
    Counted,
    /// Counted, and the address is now suppressed.
    Suppressed,
}

impl Applied {
    /// Whether the event changed the store.
    pub fn counted(self) -> bool {
        matches!(self, Applied::Counted | Applied::Suppressed)
    }
}

/// Applies one event to the store (call it inside a transaction when applying many).
pub fn apply(store: &Store, policy: &Policy, event: &Event<'_>) -> Result<Applied> {
    let (threshold, source) = match event.kind {
        Kind::Hard => (policy.hard, SuppressionSource::Bounce),
        Kind::Soft => (policy.soft, SuppressionSource::Bounce),
        Kind::Complaint => (policy.complaint, SuppressionSource::Complaint),
        Kind::Autoreply | Kind::Unrecognized => return Ok(Applied::NotCounted),
    };
    if !store.was_sent(event.edition, event.address)? {
        return Ok(Applied::NotSent);
    }
    let new = store.record_bounce(&BounceEvent {
        key: event.key,
        address: event.address,
        edition: event.edition,
        kind: event.kind.as_str(),
        status: event.status,
        diagnostic: event.diagnostic,
        at: clock::now(),
    })?;
    if !new {
        return Ok(Applied::Duplicate);
    }
    let count = match event.kind {
        Kind::Soft => soft_in_a_row(store, event.address)?,
        kind => store.bounce_editions(event.address, kind.as_str())?.len(),
    };
    if threshold == 0 || count < threshold as usize {
        return Ok(Applied::Counted);
    }
    let suppressed = store.suppress(&Suppression {
        address: event.address.to_string(),
        suppressed_at: clock::now(),
        source,
        edition: Some(event.edition.to_string()),
    })?;
    if !suppressed {
        return Ok(Applied::Counted);
    }
    store.record_suppression_reason(
        event.address,
        &SuppressionReason {
            kind: event.kind.as_str().to_string(),
            edition: event.edition.to_string(),
            status: event.status.map(str::to_string),
            diagnostic: event.diagnostic.map(str::to_string),
        },
    )?;
    Ok(Applied::Suppressed)
}

/// Editions in a row, newest first, with a soft bounce; an edition accepted without
/// any bounce ends the run (a delivery between), one not sent is passed over.
fn soft_in_a_row(store: &Store, address: &str) -> Result<usize> {
    let soft = store.bounce_editions(address, Kind::Soft.as_str())?;
    let hard = store.bounce_editions(address, Kind::Hard.as_str())?;
    let mut run = 0;
    for (edition, state) in store.sends_to(address)? {
        if soft.contains(&edition) {
            run += 1;
        } else if state == "sent" && !hard.contains(&edition) {
            break;
        }
    }
    Ok(run)
}

/// Refusals at send time (issue 11 item 2): every `bounced` row of the real send of
/// `edition` goes through [`super::classify_smtp_reply`] (enhanced code first, text
/// second) and is applied like a mailed bounce, keyed per edition and recipient so a
/// resumed send counts nothing twice. The stage of the refusal is not kept in the
/// journal, so a reply is read as an envelope (RCPT) refusal. Returns the suppressions made.
pub fn apply_refusals(store: &Store, policy: &Policy, edition: &str) -> Result<usize> {
    let refused = store.recipients(edition, crate::store::REAL, crate::store::State::Bounced)?;
    store.transaction(|store| {
        let mut suppressed = 0;
        for (address, reply) in &refused {
            let reply = reply.as_deref().unwrap_or("");
            let (code, rest) = reply.split_once(' ').unwrap_or((reply, ""));
            let Ok(code) = code.parse::<u16>() else {
                continue;
            };
            let enhanced = rest
                .split_whitespace()
                .next()
                .filter(|c| is_enhanced_code(c));
            let kind = super::classify_smtp_reply(code, enhanced, rest, false);
            let status = enhanced.unwrap_or(if code >= 500 { "5.0.0" } else { "4.0.0" });
            let key = format!("smtp:{edition}:{}", crate::store::address_key(address));
            let event = Event {
                kind,
                address,
                edition,
                status: Some(status),
                diagnostic: Some(reply),
                key: &key,
            };
            suppressed += usize::from(apply(store, policy, &event)? == Applied::Suppressed);
        }
        Ok(suppressed)
    })
}

fn is_enhanced_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The key of a returned message's finding: the same bytes and recipient, the same key.
pub fn message_key(raw: &[u8], recipient: &str) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("mail:{hex}:{}", crate::store::address_key(recipient))
}

/// Which real send (edition, address as sent) a finding belongs to, in this order:
/// the VERP token (looked up in the journal), the keyed Message-ID found in the
/// returned headers (looked up in the journal), the ENVID `brief.send.<slug>` with the
/// reported recipient, and the reported recipient's newest send in the journal.
/// `None` when none of them leads to a send this newsletter made to that address.
pub fn attribute(
    store: &Store,
    report: &Returned,
    finding: &Finding,
) -> Result<Option<(String, String)>> {
    if let Some(token) = &report.hints.verp_token {
        if let Some(send) = store.send_by_verp_token(token)? {
            return Ok(Some(send));
        }
    }
    for id in &report.hints.message_ids {
        if let Some(send) = store.send_by_message_id(id)? {
            return Ok(Some(send));
        }
    }
    let recipients: Vec<&str> = [&finding.recipient, &finding.original_recipient]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if let Some(edition) = report.hints.envid.as_deref().and_then(envid_edition) {
        for r in &recipients {
            if store.was_sent(&edition, r)? {
                return Ok(Some((edition, r.to_string())));
            }
        }
    }
    for r in recipients {
        let tried = |state: &str| !matches!(state, "pending" | "suppressed");
        if let Some((edition, _)) = store.sends_to(r)?.into_iter().find(|(_, s)| tried(s)) {
            return Ok(Some((edition, r.to_string())));
        }
    }
    Ok(None)
}

/// The edition named by a real send's ENVID (`brief.send.<slug>`, xtext-decoded).
fn envid_edition(envid: &str) -> Option<String> {
    let decoded = xtext_decode(envid.trim())?;
    decoded
        .strip_prefix("brief.send.")
        .filter(|slug| !slug.is_empty())
        .map(str::to_string)
}

fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'+' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRecipient, State, Update, REAL};

    fn sent(store: &Store, edition: &str, addresses: &[&str]) {
        let t = clock::now();
        store
            .freeze(
                edition,
                REAL,
                t,
                &mut addresses.iter().map(|a| NewRecipient {
                    address: a.to_string(),
                    name: String::new(),
                    fields: "{}".into(),
                }),
                &mut || 0,
            )
            .unwrap();
        let due = store.due(edition, REAL, 0, t, false, 100).unwrap();
        let updates: Vec<Update> = due
            .iter()
            .map(|e| Update::new(e.id, State::Sent, t))
            .collect();
        store.apply(&updates).unwrap();
    }

    fn event<'a>(kind: Kind, edition: &'a str, key: &'a str) -> Event<'a> {
        Event {
            kind,
            address: "Ann@example.org",
            edition,
            status: Some(if kind == Kind::Hard { "5.1.1" } else { "4.2.2" }),
            diagnostic: Some("550 5.1.1 user unknown"),
            key,
        }
    }

    #[test]
    fn one_hard_bounce_suppresses_once_and_resubscribe_resets() {
        let store = Store::in_memory().unwrap();
        let policy = Policy::default();
        sent(&store, "e1", &["ann@example.org"]);
        let e = event(Kind::Hard, "e1", "k1");
        assert_eq!(apply(&store, &policy, &e).unwrap(), Applied::Suppressed);
        assert_eq!(apply(&store, &policy, &e).unwrap(), Applied::Duplicate);
        let s = store.suppression("ann@example.org").unwrap().unwrap();
        assert_eq!(s.source, SuppressionSource::Bounce);
        assert_eq!(s.edition.as_deref(), Some("e1"));
        let reasons = store.suppression_reasons().unwrap();
        assert_eq!(reasons["ann@example.org"].status.as_deref(), Some("5.1.1"));
        assert!(store.resubscribe("ann@example.org").unwrap());
        assert_eq!(apply(&store, &policy, &e).unwrap(), Applied::Duplicate);
        assert!(!store.is_suppressed("ann@example.org").unwrap());
        assert!(store.suppression_reasons().unwrap().is_empty());
    }

    #[test]
    fn never_for_an_edition_not_sent_to_the_address() {
        let store = Store::in_memory().unwrap();
        sent(&store, "e1", &["bob@example.org"]);
        let e = event(Kind::Hard, "e1", "k1");
        assert_eq!(
            apply(&store, &Policy::default(), &e).unwrap(),
            Applied::NotSent
        );
        let e = event(Kind::Autoreply, "e1", "k2");
        assert_eq!(
            apply(&store, &Policy::default(), &e).unwrap(),
            Applied::NotCounted
        );
        assert!(store.suppressions().unwrap().is_empty());
    }

    #[test]
    fn soft_bounces_suppress_only_in_a_row() {
        let store = Store::in_memory().unwrap();
        let policy = Policy::default();
        for e in ["e1", "e2", "e3", "e4", "e5"] {
            sent(&store, e, &["ann@example.org"]);
        }
        // e1 and e2 soft (two notices for e2 count once), e3 delivered, e4 soft.
        for (edition, key) in [("e1", "a"), ("e2", "b"), ("e2", "c"), ("e4", "d")] {
            assert_eq!(
                apply(&store, &policy, &event(Kind::Soft, edition, key)).unwrap(),
                Applied::Counted
            );
        }
        assert!(!store.is_suppressed("ann@example.org").unwrap());
        assert_eq!(soft_in_a_row(&store, "ann@example.org").unwrap(), 0);
        let e = event(Kind::Soft, "e5", "e");
        assert_eq!(apply(&store, &policy, &e).unwrap(), Applied::Counted);
        assert_eq!(soft_in_a_row(&store, "ann@example.org").unwrap(), 2);
        let s = Store::in_memory().unwrap();
        for e in ["e1", "e2", "e3"] {
            sent(&s, e, &["ann@example.org"]);
        }
        for (edition, key) in [("e1", "a"), ("e2", "b")] {
            apply(&s, &policy, &event(Kind::Soft, edition, key)).unwrap();
        }
        let e = event(Kind::Soft, "e3", "c");
        assert_eq!(apply(&s, &policy, &e).unwrap(), Applied::Suppressed);
    }

    #[test]
    fn a_hard_refusal_at_send_time_suppresses_and_a_policy_block_does_not() {
        let store = Store::in_memory().unwrap();
        let t = clock::now();
        store
            .freeze(
                "e1",
                REAL,
                t,
                &mut ["gone@example.org", "blocked@example.org"]
                    .into_iter()
                    .map(|a| NewRecipient {
                        address: a.into(),
                        name: String::new(),
                        fields: "{}".into(),
                    }),
                &mut || 0,
            )
            .unwrap();
        let due = store.due("e1", REAL, 0, t, false, 10).unwrap();
        let mut updates = Vec::new();
        for (e, reply) in due.iter().zip([
            "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
            "550 5.7.1 Service unavailable, client host blocked",
        ]) {
            let mut u = Update::new(e.id, State::Bounced, t);
            u.reply = Some(reply.into());
            updates.push(u);
        }
        store.apply(&updates).unwrap();
        let policy = Policy::default();
        assert_eq!(apply_refusals(&store, &policy, "e1").unwrap(), 1);
        assert_eq!(apply_refusals(&store, &policy, "e1").unwrap(), 0);
        let s = store.suppression("gone@example.org").unwrap().unwrap();
        assert_eq!(s.source, SuppressionSource::Bounce);
        assert!(!store.is_suppressed("blocked@example.org").unwrap());
        let reasons = store.suppression_reasons().unwrap();
        assert_eq!(reasons["gone@example.org"].status.as_deref(), Some("5.1.1"));
        // Refusals are not bounces after acceptance.
        assert_eq!(store.bounce_counts("e1").unwrap().bounced, 0);
        assert_eq!(store.bounce_counts("e1").unwrap().suppressed, 1);
    }

    #[test]
    fn a_verp_token_alone_attributes_the_report() {
        let store = Store::in_memory().unwrap();
        let t = clock::now();
        store
            .freeze(
                "e1",
                REAL,
                t,
                &mut std::iter::once(NewRecipient {
                    address: "Ann@example.org".into(),
                    name: String::new(),
                    fields: "{}".into(),
                }),
                &mut || 0,
            )
            .unwrap();
        let due = store.due("e1", REAL, 0, t, false, 10).unwrap();
        let mut u = Update::new(due[0].id, State::Sent, t);
        u.message_id = Some("<abc234xyz@news.example.org>".into());
        store.apply(&[u]).unwrap();
        let verp =
            crate::token::verp_address("bounces@news.example.org", "<abc234xyz@news.example.org>");
        assert_eq!(verp.as_deref(), Some("bounces+abc234xyz@news.example.org"));
        let finding = Finding {
            kind: Kind::Hard,
            recipient: None,
            original_recipient: None,
            status: Some("5.1.1".into()),
            action: Some("failed".into()),
            diagnostic: None,
        };
        let mut report = Returned {
            findings: vec![finding.clone()],
            hints: Default::default(),
        };
        report.hints.verp_token = Some("ABC234XYZ".into());
        let found = attribute(&store, &report, &finding).unwrap();
        assert_eq!(found, Some(("e1".into(), "Ann@example.org".into())));
        report.hints.verp_token = Some("abc234xy".into());
        assert_eq!(attribute(&store, &report, &finding).unwrap(), None);
    }

    #[test]
    fn envid_names_the_real_edition_only() {
        assert_eq!(
            envid_edition("brief.send.2026-12-01").as_deref(),
            Some("2026-12-01")
        );
        assert_eq!(envid_edition("brief.send.a+2Bb").as_deref(), Some("a+b"));
        assert_eq!(envid_edition("brief.test.2026-12-01"), None);
        assert_eq!(envid_edition("brief.send.+4"), None);
    }
}
