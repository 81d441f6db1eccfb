//! SendGrid's signed event webhook: a JSON array of events, signed with ECDSA P-256
//! over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body;
//! the base64 DER signature is in `X-Twilio-Email-Event-Webhook-Signature`.

use super::{
    bare_address, enhanced_status, message_id_form, nonempty, status_or_default, text, Event, Kind,
    Provider, Refusal,
};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hyper::HeaderMap;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde_json::Value;
use std::path::Path;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A signature timestamp further than this from the clock is refused. Wide, because
/// SendGrid retries a failed batch for up to a day and may sign a retry with the
/// first attempt's timestamp; a replay inside the window is harmless, since every
/// event is recorded once per `sg_event_id`.
const WINDOW: chrono::Duration = chrono::Duration::hours(72);

pub(super) struct Sendgrid {
    /// The uncompressed P-256 point.
    key: Vec<u8>,
}

impl Sendgrid {
    /// The verification key, as a PEM `PUBLIC KEY` file or the bare base64 that
    /// SendGrid's console shows.
    pub(super) fn from_file(path: &Path) -> Result<Sendgrid> {
        let shown = path.display();
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read [hooks] sendgrid_public_key {shown}"))?;
        Sendgrid::from_text(&raw).with_context(|| format!("[hooks] sendgrid_public_key {shown}"))
    }

    fn from_text(raw: &str) -> Result<Sendgrid> {
        let b64: String = raw
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.split_whitespace())
            .collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|e| anyhow!("is not a PEM or base64 public key: {e}"))?;
        let spki = SubjectPublicKeyInfoOwned::from_der(&der)
            .map_err(|e| anyhow!("is not a public key: {e}"))?;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(P256) {
            bail!("is not an ECDSA P-256 key (SendGrid's signed event webhook uses one)");
        }
        let key = spki
            .subject_public_key
            .as_bytes()
            .context("holds no key")?
            .to_vec();
        Ok(Sendgrid { key })
    }

    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, Refusal> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (header(SIGNATURE), header(TIMESTAMP)) else {
            return Err(Refusal::Unauthorized("unsigned request"));
        };
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| Refusal::Unauthorized("bad signature"))?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.key)
            .verify(&signed, &signature)
            .map_err(|_| Refusal::Unauthorized("bad signature"))?;
        let at = timestamp
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .ok_or(Refusal::Unauthorized("bad timestamp"))?;
        if (now - at).abs() > WINDOW {
            return Err(Refusal::Unauthorized("stale timestamp"));
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
        let list = v
            .as_array()
            .ok_or_else(|| Refusal::Malformed("not a list of events".into()))?;
        let mut events = Vec::new();
        for e in list {
            events.extend(parse(e)?);
        }
        Ok(events)
    }
}

pub(super) fn parse(v: &Value) -> Result<Option<Event>, Refusal> {
    let malformed = |what: &str| Refusal::Malformed(format!("a SendGrid event without {what}"));
    let name = text(v, "event").ok_or_else(|| malformed("`event`"))?;
    let reason = nonempty(text(v, "reason"));
    let kind = match name {
        "bounce" if text(v, "type") == Some("blocked") => Kind::Soft,
        "bounce" => Kind::Hard,
        // Dropped: SendGrid did not send, because of its own list.
        "dropped" => match reason.as_deref() {
            Some("Bounced Address" | "Invalid") => Kind::Hard,
            Some("Spam Reporting Address") => Kind::Complaint,
            Some("Unsubscribed Address") => Kind::Unsubscribe,
            _ => return Ok(None),
        },
        "spamreport" => Kind::Complaint,
        "unsubscribe" | "group_unsubscribe" => Kind::Unsubscribe,
        _ => return Ok(None),
    };
    let event_id = nonempty(text(v, "sg_event_id")).ok_or_else(|| malformed("`sg_event_id`"))?;
    let recipient = text(v, "email")
        .and_then(bare_address)
        .ok_or_else(|| malformed("an `email` address"))?;
    let status = nonempty(text(v, "status"))
        .and_then(|s| enhanced_status(&s))
        .or_else(|| reason.as_deref().and_then(enhanced_status));
    Ok(Some(Event {
        provider: Provider::Sendgrid,
        event_id,
        kind,
        recipient,
        status: status_or_default(kind, status),
        diagnostic: reason,
        message_id: text(v, "smtp-id").and_then(message_id_form),
        at: v
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(|t| DateTime::from_timestamp(t, 0)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn verifies_a_signed_batch() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let s = Sendgrid {
            key: pair.public_key().as_ref().to_vec(),
        };
        let body = br#"[{"email":"a@x.org","event":"bounce","type":"blocked","sg_event_id":"e1","status":"5.7.1","reason":"550 5.7.1 blocked","smtp-id":"<m@x>","timestamp":1700000000},
            {"email":"a@x.org","event":"open","sg_event_id":"e2"}]"#;
        let ts = "1700000000";
        let sig = pair.sign(&rng, &[ts.as_bytes(), body].concat()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, STANDARD.encode(sig.as_ref()).parse().unwrap());
        headers.insert(TIMESTAMP, ts.parse().unwrap());
        let now = DateTime::from_timestamp(1_700_000_060, 0).unwrap();
        let events = s.verify(&headers, body, now).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].status.as_deref()),
            (Kind::Soft, Some("5.7.1"))
        );
        assert!(s.verify(&headers, &body[1..], now).is_err());
        headers.insert(TIMESTAMP, "1700000001".parse().unwrap());
        assert_eq!(
            s.verify(&headers, body, now).unwrap_err(),
            Refusal::Unauthorized("bad signature")
        );
    }

    #[test]
    fn reads_pem_and_the_consoles_base64() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // SubjectPublicKeyInfo of a P-256 key: a fixed prefix, then the point.
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(pair.public_key().as_ref());
        let b64 = STANDARD.encode(&der);
        assert_eq!(
            Sendgrid::from_text(&b64).unwrap().key,
            pair.public_key().as_ref()
        );
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &b64[..64],
            &b64[64..]
        );
        assert!(Sendgrid::from_text(&pem).is_ok());
        // The same point under another curve's identifier is refused.
        der[25 - 3] = 0x08;
        assert!(Sendgrid::from_text(&STANDARD.encode(&der)).is_err());
        assert!(Sendgrid::from_text("not a key").is_err());
    }
}
