//! Mailgun's event webhook: JSON `{"signature": {timestamp, token, signature},
//! "event-data": {...}}`, signed with hex HMAC-SHA256(signing key, timestamp + token).

use super::{
    bare_address, enhanced_status, message_id_form, nonempty, status_or_default, text, Event, Kind,
    Provider, Refusal,
};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use ring::hmac;
use serde_json::Value;

/// A signature timestamp further than this from the clock is refused.
pub(super) const WINDOW: chrono::Duration = chrono::Duration::minutes(5);

pub(super) struct Mailgun {
    key: hmac::Key,
}

impl Mailgun {
    /// The signing key from the environment variable `name`.
    pub(super) fn from_env(name: &str) -> Result<Mailgun> {
        match std::env::var(name) {
            Ok(key) if !key.trim().is_empty() => Ok(Mailgun {
                key: hmac::Key::new(hmac::HMAC_SHA256, key.trim().as_bytes()),
            }),
            _ => bail!(
                "[hooks] mailgun_signing_key_env names ${name}, which is not set: put Mailgun's HTTP webhook signing key there"
            ),
        }
    }

    /// The events of an authentic, fresh request, and its token (to refuse a replay).
    pub(super) fn verify(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Event>, String), Refusal> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
        let sig = v
            .get("signature")
            .ok_or_else(|| Refusal::Malformed("no `signature` object".into()))?;
        let (Some(timestamp), Some(token), Some(signature)) = (
            field(sig, "timestamp"),
            text(sig, "token"),
            text(sig, "signature"),
        ) else {
            return Err(Refusal::Unauthorized("incomplete signature"));
        };
        let mac = hex(signature).ok_or(Refusal::Unauthorized("bad signature"))?;
        let signed = format!("{timestamp}{token}");
        hmac::verify(&self.key, signed.as_bytes(), &mac)
            .map_err(|_| Refusal::Unauthorized("bad signature"))?;
        let at = timestamp
            .parse::<i64>()
            .ok()
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .ok_or(Refusal::Unauthorized("bad timestamp"))?;
        if (now - at).abs() > WINDOW {
            return Err(Refusal::Unauthorized("stale timestamp"));
        }
        let data = v
            .get("event-data")
            .ok_or_else(|| Refusal::Malformed("no `event-data` object".into()))?;
        Ok((parse_event(data)?.into_iter().collect(), token.to_string()))
    }
}

/// The timestamp as Mailgun sends it: a string (or, leniently, a number).
fn field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One `event-data` object; `None` for events that need no action.
pub(super) fn parse_event(d: &Value) -> Result<Option<Event>, Refusal> {
    let malformed = |what: &str| Refusal::Malformed(format!("event-data without {what}"));
    let name = text(d, "event").ok_or_else(|| malformed("`event`"))?;
    let kind = match (name, text(d, "severity")) {
        ("failed", Some("permanent")) => Kind::Hard,
        ("failed", _) => Kind::Soft,
        ("complained", _) => Kind::Complaint,
        ("unsubscribed", _) => Kind::Unsubscribe,
        _ => return Ok(None),
    };
    let event_id = nonempty(text(d, "id")).ok_or_else(|| malformed("`id`"))?;
    let recipient = text(d, "recipient")
        .and_then(bare_address)
        .ok_or_else(|| malformed("a `recipient` address"))?;
    let delivery = d.get("delivery-status").unwrap_or(&Value::Null);
    let diagnostic =
        nonempty(text(delivery, "message")).or_else(|| nonempty(text(delivery, "description")));
    let status = nonempty(text(delivery, "enhanced-code"))
        .or_else(|| diagnostic.as_deref().and_then(enhanced_status));
    let message_id = d
        .pointer("/message/headers/message-id")
        .and_then(Value::as_str)
        .and_then(message_id_form);
    let at = d
        .get("timestamp")
        .and_then(Value::as_f64)
        .and_then(|t| DateTime::from_timestamp(t as i64, 0));
    Ok(Some(Event {
        provider: Provider::Mailgun,
        event_id,
        kind,
        recipient,
        status: status_or_default(kind, status),
        diagnostic,
        message_id,
        at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &str, timestamp: i64, token: &str, event: Value) -> Vec<u8> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
        let tag = hmac::sign(&k, format!("{timestamp}{token}").as_bytes());
        let sig: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        serde_json::to_vec(&serde_json::json!({
            "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": sig},
            "event-data": event,
        }))
        .unwrap()
    }

    #[test]
    fn verifies_and_maps() {
        let m = Mailgun {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"key-1"),
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let event = serde_json::json!({
            "id": "G9Bn5sl1TC6nu79C8C0bwg", "event": "failed", "severity": "temporary",
            "recipient": "ann@example.org", "timestamp": 1_699_999_990.5,
            "delivery-status": {"code": 452, "message": "452 4.2.2 Mailbox full", "enhanced-code": ""},
            "message": {"headers": {"message-id": "abc@news.example.org"}}
        });
        let body = signed("key-1", 1_700_000_000, "tok", event.clone());
        let (events, token) = m.verify(&body, now).unwrap();
        assert_eq!(token, "tok");
        assert_eq!(events[0].kind, Kind::Soft);
        assert_eq!(events[0].status.as_deref(), Some("4.2.2"));
        assert_eq!(
            events[0].message_id.as_deref(),
            Some("<abc@news.example.org>")
        );
        let forged = signed("key-2", 1_700_000_000, "tok", event.clone());
        assert_eq!(
            m.verify(&forged, now).unwrap_err(),
            Refusal::Unauthorized("bad signature")
        );
        let stale = signed("key-1", 1_700_000_000 - 301, "tok", event);
        assert_eq!(
            m.verify(&stale, now).unwrap_err(),
            Refusal::Unauthorized("stale timestamp")
        );
        assert!(matches!(m.verify(b"{", now), Err(Refusal::Malformed(_))));
    }
}
