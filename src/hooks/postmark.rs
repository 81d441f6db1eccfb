//! Postmark's bounce, spam complaint and subscription change webhooks: one JSON object
//! per request, authenticated by HTTP basic auth (Postmark signs nothing).

use super::{
    bare_address, enhanced_status, message_id_form, nonempty, same_secret, status_or_default, text,
    Event, Kind, Provider, Refusal,
};
use crate::config::Hooks as HooksConfig;
use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use serde_json::Value;

pub(super) struct Postmark {
    user: String,
    password: String,
}

impl Postmark {
    /// The credentials `[hooks]` gives (user and password both, or neither).
    pub(super) fn from_config(h: &HooksConfig) -> Result<Option<Postmark>> {
        match (&h.postmark_user, &h.postmark_password_env) {
            (None, None) => Ok(None),
            (Some(user), Some(env)) => match std::env::var(env) {
                Ok(password) if !password.is_empty() => Ok(Some(Postmark {
                    user: user.clone(),
                    password,
                })),
                _ => bail!(
                    "[hooks] postmark_password_env names ${env}, which is not set: put the webhook's basic-auth password there"
                ),
            },
            _ => bail!("[hooks] needs both postmark_user and postmark_password_env"),
        }
    }

    pub(super) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, Refusal> {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .ok_or(Refusal::Unauthorized("basic authentication required"))?;
        let (user, password) = match given.iter().position(|&b| b == b':') {
            Some(i) => (&given[..i], &given[i + 1..]),
            None => (&given[..], &b""[..]),
        };
        // Both compared, always: which half was wrong is not told by the timing.
        let user_ok = same_secret(user, self.user.as_bytes());
        let password_ok = same_secret(password, self.password.as_bytes());
        if !(user_ok & password_ok) {
            return Err(Refusal::Unauthorized("wrong credentials"));
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
        Ok(parse(&v)?.into_iter().collect())
    }
}

pub(super) fn parse(v: &Value) -> Result<Option<Event>, Refusal> {
    let malformed = |what: &str| Refusal::Malformed(format!("a Postmark record without {what}"));
    let record = text(v, "RecordType").ok_or_else(|| malformed("`RecordType`"))?;
    let (kind, recipient, at, event_id) = match record {
        "Bounce" | "SpamComplaint" => {
            let kind = match (record, text(v, "Type")) {
                ("SpamComplaint", _) | (_, Some("SpamComplaint")) => Kind::Complaint,
                (_, Some("HardBounce" | "BadEmailAddress")) => Kind::Hard,
                (_, Some("SoftBounce" | "Transient" | "DnsError" | "Blocked" | "DMARCPolicy")) => {
                    Kind::Soft
                }
                (_, Some("Unsubscribe")) => Kind::Unsubscribe,
                _ => return Ok(None),
            };
            let id = match v.get("ID") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err(malformed("`ID`")),
            };
            (kind, text(v, "Email"), text(v, "BouncedAt"), id)
        }
        "SubscriptionChange" => {
            if v.get("SuppressSending").and_then(Value::as_bool) != Some(true) {
                return Ok(None); // a reactivation: brief does not resubscribe on it
            }
            let kind = match text(v, "SuppressionReason") {
                Some("HardBounce") => Kind::Hard,
                Some("SpamComplaint") => Kind::Complaint,
                _ => Kind::Unsubscribe,
            };
            // No event id: the change itself (message, recipient, time) is one.
            let id = format!(
                "subscription-change/{}/{}/{}",
                text(v, "MessageID").unwrap_or(""),
                text(v, "Recipient").unwrap_or(""),
                text(v, "ChangedAt").unwrap_or("")
            );
            (kind, text(v, "Recipient"), text(v, "ChangedAt"), id)
        }
        _ => return Ok(None),
    };
    let recipient = recipient
        .and_then(bare_address)
        .ok_or_else(|| malformed("a recipient address"))?;
    let diagnostic = nonempty(text(v, "Details")).or_else(|| nonempty(text(v, "Description")));
    let status = diagnostic.as_deref().and_then(enhanced_status);
    Ok(Some(Event {
        provider: Provider::Postmark,
        event_id,
        kind,
        recipient,
        status: status_or_default(kind, status),
        diagnostic,
        message_id: text(v, "MessageID").and_then(message_id_form),
        at: at
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_records() {
        let bounce = serde_json::json!({"RecordType": "Bounce", "ID": 4323372036854775807u64,
            "Type": "HardBounce", "Email": "john@example.com", "BouncedAt": "2019-11-05T16:33:54.9070259Z",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483"});
        let e = parse(&bounce).unwrap().unwrap();
        assert_eq!((e.kind, e.status.as_deref()), (Kind::Hard, Some("5.1.1")));
        assert_eq!(e.event_id, "4323372036854775807");
        let change = serde_json::json!({"RecordType": "SubscriptionChange", "MessageID": "m",
            "Recipient": "a@x.org", "ChangedAt": "2020-02-01T10:53:34.416071Z",
            "SuppressSending": true, "SuppressionReason": "ManualSuppression"});
        assert_eq!(parse(&change).unwrap().unwrap().kind, Kind::Unsubscribe);
        let open = serde_json::json!({"RecordType": "Open", "Recipient": "a@x.org"});
        assert_eq!(parse(&open).unwrap(), None);
        assert!(parse(&serde_json::json!({"Type": "HardBounce"})).is_err());
    }
}
