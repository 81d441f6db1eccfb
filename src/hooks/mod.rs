//! Provider webhooks: bounces, complaints and unsubscribes that Amazon SES (over SNS),
//! Mailgun, Postmark and SendGrid report by HTTP, under `brief serve`'s `/hooks/<provider>`.
//!
//! Each provider module verifies its request (signature, credentials, freshness) and
//! maps its payload into provider-neutral [`Event`]s; [`apply`] is the one place they
//! change the store, in one transaction that commits before the 2xx answer: bounces
//! and complaints through `bounce::policy::apply`, the same `[bounces]` policy as the
//! mailed bounces and refusals at send time.

mod fetch;
mod mailgun;
mod postmark;
mod sendgrid;
pub mod ses;

use crate::bounce::{self, policy, policy::Policy};
use crate::clock;
use crate::config::Config;
use crate::store::{address_key, ProviderEvent, Store, Suppression, SuppressionSource};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use hyper::HeaderMap;
use std::sync::{Arc, Mutex};

/// How far back a send counts when an event can only be matched by its recipient.
const RECENT_SENDS: chrono::Duration = chrono::Duration::days(30);

/// The providers brief takes webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Mailgun,
    Postmark,
    Sendgrid,
    Ses,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Mailgun => "mailgun",
            Provider::Postmark => "postmark",
            Provider::Sendgrid => "sendgrid",
            Provider::Ses => "ses",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        [
            Provider::Mailgun,
            Provider::Postmark,
            Provider::Sendgrid,
            Provider::Ses,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// What an event says about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The address will never accept mail.
    Hard,
    /// A failure that may pass (full mailbox, a block, a delay).
    Soft,
    /// The reader reported the message as spam.
    Complaint,
    /// The reader unsubscribed through the provider.
    Unsubscribe,
    /// Nothing to act on (delivered, opened, a reactivation …).
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Other => "other",
        }
    }
}

/// One provider event, whatever the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub provider: Provider,
    /// The provider's id of the event (unique per provider; repeated on redelivery).
    pub event_id: String,
    pub kind: Kind,
    /// A bare address.
    pub recipient: String,
    /// Enhanced status code (`5.1.1`).
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The provider's copy of the original Message-ID, in angle brackets.
    pub message_id: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// Why a request was refused; nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Bad or missing signature or credentials, or a stale timestamp.
    Unauthorized(&'static str),
    /// Authentic but not to be honoured: a replay, another topic, an untrusted host.
    Forbidden(&'static str),
    /// Not a payload of this provider.
    Malformed(String),
    /// Could not be processed now (store, certificate fetch); the provider retries.
    Unavailable(String),
}

/// What [`apply`] did with one request's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events recorded for the first time.
    pub recorded: usize,
    /// Events already recorded earlier (a provider's redelivery).
    pub duplicates: usize,
    /// Addresses newly suppressed.
    pub suppressed: usize,
    /// Events for addresses this newsletter never sent to: recorded, nothing changed.
    pub unattributed: usize,
}

/// Records `events` (and the request's `nonce`, if its signature has one) in one
/// transaction, committed when this returns `Ok`.
///
/// Idempotent per (provider, event id). An event is attributed to an edition by the
/// original Message-ID if the journal has it for this recipient, else by the
/// recipient's latest real send in the last 30 days; an event for an address this
/// newsletter never sent to is recorded as `unattributed` and changes nothing.
/// Hard and soft bounces and complaints go through [`policy::apply`], the one
/// `[bounces]` policy the mailed bounces also go through (keyed
/// `provider:<provider>:<event id>:<address>`), so `brief status` and the editors'
/// report count them alike. Provider unsubscribes suppress with source `provider`.
///
/// A replayed nonce returns `Err(Refusal::Forbidden)` and changes nothing.
pub fn apply(
    store: &Store,
    policy: &Policy,
    nonce: Option<(Provider, &str)>,
    events: &[Event],
) -> Result<Result<Applied, Refusal>> {
    store.transaction(|store| apply_in_transaction(store, policy, nonce, events))
}

fn apply_in_transaction(
    store: &Store,
    policy: &Policy,
    nonce: Option<(Provider, &str)>,
    events: &[Event],
) -> Result<Result<Applied, Refusal>> {
    let now = clock::now();
    if let Some((provider, nonce)) = nonce {
        // Nonces older than twice the freshness window can no longer pass it.
        let forget_before = now - mailgun::WINDOW * 2;
        if !store.take_nonce(provider.as_str(), nonce, now, forget_before)? {
            return Ok(Err(Refusal::Forbidden("this request was already received")));
        }
    }
    let mut applied = Applied::default();
    for e in events.iter().filter(|e| e.kind != Kind::Other) {
        if store.has_event(e.provider.as_str(), &e.event_id)? {
            applied.duplicates += 1;
            continue;
        }
        let edition = attribute(store, e, now)?;
        let outcome = match &edition {
            None => {
                applied.unattributed += 1;
                "unattributed"
            }
            Some(edition) => {
                let outcome = apply_to_edition(store, policy, e, edition, now)?;
                applied.suppressed += usize::from(outcome == "suppressed");
                outcome
            }
        };
        store.record_event(&ProviderEvent {
            provider: e.provider.as_str().to_string(),
            event_id: e.event_id.clone(),
            kind: e.kind.as_str().to_string(),
            recipient: Some(e.recipient.clone()),
            status: e.status.clone(),
            diagnostic: e.diagnostic.clone(),
            message_id: e.message_id.clone(),
            occurred_at: e.at,
            received_at: now,
            edition,
            outcome: outcome.to_string(),
        })?;
        applied.recorded += 1;
    }
    Ok(Ok(applied))
}

/// What an attributed event did: a bounce or complaint is the policy's to count,
/// an unsubscribe suppresses at once.
fn apply_to_edition(
    store: &Store,
    policy: &Policy,
    e: &Event,
    edition: &str,
    now: DateTime<Utc>,
) -> Result<&'static str> {
    let kind = match e.kind {
        Kind::Hard => bounce::Kind::Hard,
        Kind::Soft => bounce::Kind::Soft,
        Kind::Complaint => bounce::Kind::Complaint,
        Kind::Unsubscribe => {
            let new = store.suppress(&Suppression {
                address: e.recipient.clone(),
                suppressed_at: now,
                source: SuppressionSource::Provider,
                edition: Some(edition.to_string()),
            })?;
            return Ok(if new {
                "suppressed"
            } else {
                "already-suppressed"
            });
        }
        Kind::Other => return Ok("recorded"),
    };
    let key = format!(
        "provider:{}:{}:{}",
        e.provider.as_str(),
        e.event_id,
        address_key(&e.recipient)
    );
    let applied = policy::apply(
        store,
        policy,
        &policy::Event {
            kind,
            address: &e.recipient,
            edition,
            status: e.status.as_deref(),
            diagnostic: e.diagnostic.as_deref(),
            key: &key,
        },
    )?;
    Ok(match applied {
        policy::Applied::Suppressed => "suppressed",
        policy::Applied::Counted => "counted",
        policy::Applied::Duplicate => "duplicate",
        policy::Applied::NotSent => "not-sent",
        policy::Applied::NotCounted => "recorded",
    })
}

/// The edition an event is about, or `None` if this newsletter never sent to its
/// recipient. brief's Message-IDs are keyed hashes (see `token::Keyring::message_id`),
/// not reversible, so the journal, which keeps each message's id, is the look-up.
fn attribute(store: &Store, e: &Event, now: DateTime<Utc>) -> Result<Option<String>> {
    if let Some(id) = &e.message_id {
        if let Some(edition) = store.edition_by_message_id(id, &e.recipient)? {
            return Ok(Some(edition));
        }
    }
    let since = e.at.unwrap_or(now).min(now) - RECENT_SENDS;
    store.recent_edition_for(&e.recipient, since)
}

/// The configured providers and the store their events go to.
pub struct Hooks {
    mailgun: Option<mailgun::Mailgun>,
    postmark: Option<postmark::Postmark>,
    sendgrid: Option<sendgrid::Sendgrid>,
    ses: Option<ses::Ses>,
    policy: Policy,
    store: Arc<Mutex<Store>>,
}

impl Hooks {
    /// The providers `[hooks]` configures (their secrets read now: a configured
    /// provider whose secret is missing is an error, not a silent 404).
    pub fn from_config(config: &Config) -> Result<Hooks> {
        let h = &config.hooks;
        Ok(Hooks {
            mailgun: h
                .mailgun_signing_key_env
                .as_deref()
                .map(mailgun::Mailgun::from_env)
                .transpose()?,
            postmark: postmark::Postmark::from_config(h)?,
            sendgrid: h
                .sendgrid_public_key
                .as_ref()
                .map(|p| sendgrid::Sendgrid::from_file(&config.resolve(p)))
                .transpose()?,
            ses: h
                .ses_topic_arn
                .as_ref()
                .map(|arn| ses::Ses::new(arn.clone(), ses::certificate_cache_dir(config)))
                .transpose()?,
            policy: config.bounces,
            store: Arc::new(Mutex::new(Store::for_config(config)?)),
        })
    }

    /// Whether `provider` (a path segment) is configured.
    pub fn accepts(&self, provider: &str) -> bool {
        match Provider::parse(provider) {
            Some(Provider::Mailgun) => self.mailgun.is_some(),
            Some(Provider::Postmark) => self.postmark.is_some(),
            Some(Provider::Sendgrid) => self.sendgrid.is_some(),
            Some(Provider::Ses) => self.ses.is_some(),
            None => false,
        }
    }

    /// Verifies and applies one webhook request; `Ok` carries a short summary for the
    /// 200 answer.
    pub async fn handle(
        &self,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, Refusal> {
        let now = clock::now();
        let unknown = || Refusal::Malformed("no such provider".into());
        let (events, nonce) = match Provider::parse(provider).ok_or_else(unknown)? {
            Provider::Mailgun => {
                let m = self.mailgun.as_ref().ok_or_else(unknown)?;
                let (events, token) = m.verify(body, now)?;
                (events, Some((Provider::Mailgun, token)))
            }
            Provider::Postmark => {
                let p = self.postmark.as_ref().ok_or_else(unknown)?;
                (p.verify(headers, body)?, None)
            }
            Provider::Sendgrid => {
                let s = self.sendgrid.as_ref().ok_or_else(unknown)?;
                (s.verify(headers, body, now)?, None)
            }
            Provider::Ses => {
                let s = self.ses.as_ref().ok_or_else(unknown)?;
                match s.verify(body, now).await? {
                    ses::Verified::Events(events) => (events, None),
                    ses::Verified::Done(summary) => return Ok(summary),
                }
            }
        };
        let store = self.store.clone();
        let policy = self.policy;
        let outcome = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            let nonce = nonce.as_ref().map(|(p, n)| (*p, n.as_str()));
            apply(&store, &policy, nonce, &events)
        })
        .await
        .context("the event writer stopped")
        .and_then(|r| r);
        match outcome {
            Ok(Ok(a)) => Ok(format!(
                "recorded {}, duplicates {}, suppressed {}, unattributed {}\n",
                a.recorded, a.duplicates, a.suppressed, a.unattributed
            )),
            Ok(Err(refusal)) => Err(refusal),
            Err(err) => {
                tracing::error!("cannot record {provider} events: {err:#}");
                Err(Refusal::Unavailable(
                    "the events could not be recorded".into(),
                ))
            }
        }
    }
}

/// What `brief check` says about `[hooks]`: (key, is it an error, message). A missing
/// secret variable is a warning (check may run on another machine than `brief serve`,
/// which refuses to start without it); a key file or topic ARN that cannot work is an
/// error.
pub fn config_problems(config: &Config) -> Vec<(&'static str, bool, String)> {
    let h = &config.hooks;
    let mut out = Vec::new();
    let unset = |name: &str| std::env::var(name).map_or(true, |v| v.trim().is_empty());
    if let Some(name) = h.mailgun_signing_key_env.as_deref().filter(|n| unset(n)) {
        out.push((
            "hooks.mailgun_signing_key_env",
            false,
            format!("${name} is not set here: `brief serve` needs Mailgun's signing key in it"),
        ));
    }
    match (&h.postmark_user, &h.postmark_password_env) {
        (Some(_), Some(name)) if unset(name) => out.push((
            "hooks.postmark_password_env",
            false,
            format!("${name} is not set here: `brief serve` needs the Postmark webhook's password in it"),
        )),
        (Some(_), None) | (None, Some(_)) => out.push((
            "hooks.postmark_user",
            true,
            "[hooks] needs both postmark_user and postmark_password_env".to_string(),
        )),
        _ => {}
    }
    if let Some(path) = &h.sendgrid_public_key {
        if let Err(e) = sendgrid::Sendgrid::from_file(&config.resolve(path)) {
            out.push(("hooks.sendgrid_public_key", true, format!("{e:#}")));
        }
    }
    if let Some(arn) = &h.ses_topic_arn {
        if let Err(e) = ses::Ses::new(arn.clone(), ses::certificate_cache_dir(config)) {
            out.push(("hooks.ses_topic_arn", true, format!("{e:#}")));
        }
    }
    out
}

/// The first enhanced status code (`5.1.1`, RFC 3463) in a provider's text.
fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_matches('.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The status an event reports, else the class its kind implies (`5.0.0`, `4.0.0`).
fn status_or_default(kind: Kind, found: Option<String>) -> Option<String> {
    found.or(match kind {
        Kind::Hard => Some("5.0.0".to_string()),
        Kind::Soft => Some("4.0.0".to_string()),
        _ => None,
    })
}

/// `Name <addr@host>` or `addr@host` → `addr@host`.
fn bare_address(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let s = s.trim();
    (s.contains('@') && !s.contains(char::is_whitespace) && s.len() <= 320).then(|| s.to_string())
}

/// A Message-ID in the form brief keeps in its journal: `<id@host>`.
fn message_id_form(raw: &str) -> Option<String> {
    let s = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!s.is_empty() && s.len() <= 998).then(|| format!("<{s}>"))
}

/// A string field of a JSON object, if present and a string.
fn text<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// A non-empty trimmed string, owned.
fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Equal in constant time (for secrets; the length is not secret).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRecipient, State, Update, REAL};

    #[test]
    fn status_codes_in_text() {
        assert_eq!(
            enhanced_status("smtp; 550 5.1.1 <a@b.c>: user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status("452 4.2.2 over quota.").as_deref(),
            Some("4.2.2")
        );
        assert_eq!(enhanced_status("version 1.2.3 of 10.0.0.1"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn addresses_and_ids() {
        assert_eq!(
            bare_address("Ann <ann@x.org>").as_deref(),
            Some("ann@x.org")
        );
        assert_eq!(bare_address(" ann@x.org ").as_deref(), Some("ann@x.org"));
        assert_eq!(bare_address("nobody"), None);
        assert_eq!(message_id_form("abc@x").as_deref(), Some("<abc@x>"));
        assert_eq!(message_id_form("<abc@x>").as_deref(), Some("<abc@x>"));
        assert_eq!(message_id_form("<>"), None);
    }

    fn sent_store() -> Store {
        let store = Store::in_memory().unwrap();
        let now = clock::now();
        let mut readers =
            ["ann@example.org", "bob@example.org"]
                .into_iter()
                .map(|a| NewRecipient {
                    address: a.into(),
                    name: String::new(),
                    fields: "{}".into(),
                });
        store
            .freeze("e1", REAL, now, &mut readers, &mut || 0)
            .unwrap();
        let entries = store.due("e1", REAL, 0, now, false, 10).unwrap();
        let updates: Vec<Update> = entries
            .iter()
            .map(|e| {
                let mut u = Update::new(e.id, State::Sent, now);
                u.message_id = Some(format!("<{}@news.example.org>", e.address.len()));
                u
            })
            .collect();
        store.apply(&updates).unwrap();
        store
    }

    fn event(id: &str, kind: Kind, recipient: &str) -> Event {
        Event {
            provider: Provider::Mailgun,
            event_id: id.into(),
            kind,
            recipient: recipient.into(),
            status: None,
            diagnostic: None,
            message_id: None,
            at: None,
        }
    }

    #[test]
    fn apply_is_idempotent_and_changes_nothing_for_strangers() {
        let store = sent_store();
        let events = [
            event("1", Kind::Hard, "Ann@Example.org"),
            event("2", Kind::Soft, "bob@example.org"),
            event("3", Kind::Complaint, "stranger@example.org"),
            event("4", Kind::Other, "bob@example.org"),
        ];
        let first = apply(&store, &Policy::default(), None, &events)
            .unwrap()
            .unwrap();
        assert_eq!(
            first,
            Applied {
                recorded: 3,
                duplicates: 0,
                suppressed: 1,
                unattributed: 1
            }
        );
        let counts = store.bounce_counts("e1").unwrap();
        assert_eq!((counts.bounced, counts.suppressed), (2, 1));
        let again = apply(&store, &Policy::default(), None, &events)
            .unwrap()
            .unwrap();
        assert_eq!(again.duplicates, 3);
        assert_eq!(again.recorded, 0);
        let list = store.suppressions().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].source, SuppressionSource::Bounce);
        assert_eq!(list[0].edition.as_deref(), Some("e1"));
        assert!(!store.is_suppressed("stranger@example.org").unwrap());
    }

    /// JSON built from the field names and values the providers use, nested a little.
    fn payload() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let words = prop_oneof![
            Just("failed"),
            Just("permanent"),
            Just("temporary"),
            Just("complained"),
            Just("unsubscribed"),
            Just("Bounce"),
            Just("Complaint"),
            Just("HardBounce"),
            Just("SubscriptionChange"),
            Just("bounce"),
            Just("blocked"),
            Just("dropped"),
            Just("spamreport"),
            Just("Permanent"),
            Just("Transient"),
            Just("a@x.org"),
            Just("<m@x>"),
            Just("5.4.4"),
            Just("2030-01-01T00:00:00Z"),
            Just(""),
        ];
        let keys = prop_oneof![
            Just("event"),
            Just("severity"),
            Just("id"),
            Just("recipient"),
            Just("timestamp"),
            Just("delivery-status"),
            Just("message"),
            Just("headers"),
            Just("message-id"),
            Just("RecordType"),
            Just("Type"),
            Just("ID"),
            Just("Email"),
            Just("Recipient"),
            Just("SuppressSending"),
            Just("SuppressionReason"),
            Just("Details"),
            Just("email"),
            Just("sg_event_id"),
            Just("type"),
            Just("reason"),
            Just("status"),
            Just("smtp-id"),
            Just("notificationType"),
            Just("bounce"),
            Just("complaint"),
            Just("bounceType"),
            Just("bouncedRecipients"),
            Just("complainedRecipients"),
            Just("emailAddress"),
            Just("diagnosticCode"),
            Just("mail"),
            Just("name"),
            Just("value"),
            Just("commonHeaders"),
            Just("messageId"),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            words.prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys.clone(), inner, 0..8).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_payload_makes_a_parser_panic(v in payload(), text in ".{0,80}") {
            let _ = mailgun::parse_event(&v);
            let _ = postmark::parse(&v);
            let _ = sendgrid::parse(&v);
            let _ = ses::events("m", &v);
            let _ = ses::canonical(&v, "Notification");
            let _ = enhanced_status(&text);
            let _ = bare_address(&text);
            let _ = message_id_form(&text);
        }
    }

    #[test]
    fn applied_events_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let applied = apply(
            &store,
            &Policy::default(),
            None,
            &[event("1", Kind::Hard, "ann@example.org")],
        );
        assert_eq!(applied.unwrap().unwrap().unattributed, 1);
        let other = Store::open(&path).unwrap();
        assert_eq!(other.provider_events().unwrap().len(), 1);
    }

    #[test]
    fn a_replayed_nonce_records_nothing() {
        let store = sent_store();
        let events = [event("1", Kind::Hard, "ann@example.org")];
        let nonce = Some((Provider::Mailgun, "tok"));
        assert!(apply(&store, &Policy::default(), nonce, &events)
            .unwrap()
            .is_ok());
        let other = [event("2", Kind::Complaint, "bob@example.org")];
        assert!(matches!(
            apply(&store, &Policy::default(), nonce, &other).unwrap(),
            Err(Refusal::Forbidden(_))
        ));
        assert!(!store.is_suppressed("bob@example.org").unwrap());
        assert_eq!(store.provider_events().unwrap().len(), 1);
    }
}
