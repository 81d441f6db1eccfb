//! Amazon SES notifications over SNS. Every SNS message is verified (SignatureVersion
//! 1: RSA SHA-1, 2: RSA SHA-256) over its canonical string against the signing
//! certificate at `SigningCertURL`, which must be an SNS host of AWS (see
//! [`super::fetch::sns_url`]) and is fetched over HTTPS once, then cached in memory
//! and in [`certificate_cache_dir`]. That folder is the injection point: a certificate
//! placed there under [`certificate_cache_file`]'s name is used without a fetch (tests
//! do this offline); the URL must still pass the host rule.

use super::{
    bare_address, enhanced_status, fetch, message_id_form, nonempty, status_or_default, text,
    Event, Kind, Provider, Refusal,
};
use crate::bounce;
use crate::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use ring::signature::{
    UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256,
};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use x509_cert::der::Decode;
use x509_cert::Certificate;

/// The folder of cached SNS signing certificates: `sns-certificates/` beside the state store.
pub fn certificate_cache_dir(config: &Config) -> PathBuf {
    let state = config.state_path();
    state.parent().map_or_else(
        || PathBuf::from("sns-certificates"),
        |p| p.join("sns-certificates"),
    )
}

/// The cached copy of the certificate at `url`: `<sha256 of the URL>.pem`.
pub fn certificate_cache_file(dir: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.pem"))
}

/// A verified signing certificate's RSA key and validity.
struct SigningKey {
    rsa: Vec<u8>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

pub struct Ses {
    topic_arn: String,
    cache_dir: PathBuf,
    keys: Mutex<HashMap<String, Arc<SigningKey>>>,
}

/// What an authentic SNS message asks for.
pub enum Verified {
    /// A notification's events, to apply.
    Events(Vec<Event>),
    /// Handled already (a subscription confirmed, an unsubscribe noted).
    Done(String),
}

impl Ses {
    pub fn new(topic_arn: String, cache_dir: PathBuf) -> Result<Ses> {
        if !topic_arn.starts_with("arn:aws") || topic_arn.split(':').count() != 6 {
            bail!("[hooks] ses_topic_arn `{topic_arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)");
        }
        Ok(Ses {
            topic_arn,
            cache_dir,
            keys: Mutex::new(HashMap::new()),
        })
    }

    pub async fn verify(&self, body: &[u8], now: DateTime<Utc>) -> Result<Verified, Refusal> {
        let m: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
        let ty = text(&m, "Type").ok_or_else(|| Refusal::Malformed("no SNS `Type`".into()))?;
        let canonical = canonical(&m, ty)?;
        if text(&m, "TopicArn") != Some(self.topic_arn.as_str()) {
            return Err(Refusal::Forbidden("not the configured topic"));
        }
        let cert_url = text(&m, "SigningCertURL").unwrap_or("");
        if fetch::sns_url(cert_url).is_none() {
            return Err(Refusal::Forbidden(
                "the signing certificate is not on an SNS host",
            ));
        }
        let algorithm = match text(&m, "SignatureVersion") {
            Some("1") => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Some("2") => &RSA_PKCS1_2048_8192_SHA256,
            _ => return Err(Refusal::Unauthorized("unknown SignatureVersion")),
        };
        let signature = text(&m, "Signature")
            .and_then(|s| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).ok()
            })
            .ok_or(Refusal::Unauthorized("bad signature"))?;
        let key = self.signing_key(cert_url).await?;
        if now < key.not_before || now > key.not_after {
            return Err(Refusal::Unauthorized(
                "the signing certificate is not valid now",
            ));
        }
        UnparsedPublicKey::new(algorithm, &key.rsa)
            .verify(canonical.as_bytes(), &signature)
            .map_err(|_| Refusal::Unauthorized("bad signature"))?;
        match ty {
            "Notification" => {
                let message_id = text(&m, "MessageId").unwrap_or_default();
                let inner: Value = serde_json::from_str(text(&m, "Message").unwrap_or_default())
                    .map_err(|e| Refusal::Malformed(format!("the SES message is not JSON: {e}")))?;
                Ok(Verified::Events(events(message_id, &inner)?))
            }
            "SubscriptionConfirmation" => {
                let url = text(&m, "SubscribeURL").unwrap_or("");
                let uri = fetch::sns_url(url)
                    .ok_or(Refusal::Forbidden("the SubscribeURL is not on an SNS host"))?;
                fetch::get(&uri).await.map_err(|e| {
                    tracing::warn!("cannot confirm the SNS subscription: {e:#}");
                    Refusal::Unavailable("the subscription could not be confirmed".into())
                })?;
                tracing::info!("confirmed the SNS subscription to {}", self.topic_arn);
                Ok(Verified::Done("subscription confirmed\n".into()))
            }
            "UnsubscribeConfirmation" => {
                tracing::warn!("SNS says the subscription to {} ended", self.topic_arn);
                Ok(Verified::Done("noted\n".into()))
            }
            _ => Err(Refusal::Malformed(format!("unknown SNS type `{ty}`"))),
        }
    }

    async fn signing_key(&self, url: &str) -> Result<Arc<SigningKey>, Refusal> {
        if let Some(key) = self.lock().get(url) {
            return Ok(key.clone());
        }
        let file = certificate_cache_file(&self.cache_dir, url);
        let pem = match std::fs::read(&file) {
            Ok(pem) => pem,
            Err(_) => {
                let uri = fetch::sns_url(url).ok_or(Refusal::Forbidden("not an SNS host"))?;
                let pem = fetch::get(&uri).await.map_err(|e| {
                    tracing::warn!("cannot fetch the SNS signing certificate: {e:#}");
                    Refusal::Unavailable("the signing certificate could not be fetched".into())
                })?;
                // Checked before it is kept: a bad download is not cached.
                signing_key(&pem).map_err(|_| Refusal::Unauthorized("bad signing certificate"))?;
                if let Err(e) = save(&file, &pem) {
                    tracing::warn!("cannot cache {}: {e:#}", file.display());
                }
                pem.to_vec()
            }
        };
        let key = Arc::new(signing_key(&pem).map_err(|e| {
            tracing::warn!("{}: {e:#}", file.display());
            Refusal::Unauthorized("bad signing certificate")
        })?);
        self.lock().insert(url.to_string(), key.clone());
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SigningKey>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn save(file: &Path, pem: &[u8]) -> Result<()> {
    let dir = file.parent().context("no folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

fn signing_key(pem: &[u8]) -> Result<SigningKey> {
    let der =
        CertificateDer::from_pem_slice(pem).map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert =
        Certificate::from_der(der.as_ref()).map_err(|e| anyhow!("not a certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let time = |t: x509_cert::time::Time| {
        DateTime::from_timestamp(t.to_unix_duration().as_secs() as i64, 0)
            .context("a validity date out of range")
    };
    Ok(SigningKey {
        rsa: tbs
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .context("no public key")?
            .to_vec(),
        not_before: time(tbs.validity.not_before)?,
        not_after: time(tbs.validity.not_after)?,
    })
}

/// The string SNS signs: the message's fields in a fixed order, `Name\nvalue\n` each
/// (a notification's `Subject` only when it has one).
pub(super) fn canonical(m: &Value, ty: &str) -> Result<String, Refusal> {
    let fields: &[&str] = match ty {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        _ => return Err(Refusal::Malformed(format!("unknown SNS type `{ty}`"))),
    };
    let mut out = String::new();
    for &name in fields {
        match m.get(name) {
            Some(Value::String(v)) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None | Some(Value::Null) if name == "Subject" => {}
            _ => return Err(Refusal::Malformed(format!("SNS message without `{name}`"))),
        }
    }
    Ok(out)
}

/// The events of one SES notification (`notificationType`, or `eventType` for a
/// configuration set's event publishing), one per recipient.
pub(super) fn events(sns_message_id: &str, n: &Value) -> Result<Vec<Event>, Refusal> {
    let ty = text(n, "notificationType").or_else(|| text(n, "eventType"));
    let message_id = original_message_id(n);
    let (kind_of, list, key, at) = match ty {
        Some("Bounce") => {
            let b = n.get("bounce").unwrap_or(&Value::Null);
            let bounce_type = match (text(b, "bounceType"), text(b, "bounceSubType")) {
                (
                    Some("Permanent"),
                    Some("NoEmail" | "Suppressed" | "OnAccountSuppressionList"),
                ) => SesBounce::NoMailbox,
                (Some("Permanent"), _) => SesBounce::Permanent,
                _ => SesBounce::Transient,
            };
            (
                Some(bounce_type),
                b.get("bouncedRecipients"),
                "bounce",
                text(b, "timestamp"),
            )
        }
        Some("Complaint") => {
            let c = n.get("complaint").unwrap_or(&Value::Null);
            (
                None,
                c.get("complainedRecipients"),
                "complaint",
                text(c, "timestamp"),
            )
        }
        _ => return Ok(Vec::new()), // deliveries, sends, opens: nothing to act on
    };
    let list = list
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::Malformed(format!("a {key} without recipients")))?;
    let at = at
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut out = Vec::new();
    for r in list {
        let Some(recipient) = text(r, "emailAddress").and_then(bare_address) else {
            return Err(Refusal::Malformed(format!(
                "a {key} recipient without an address"
            )));
        };
        let diagnostic = nonempty(text(r, "diagnosticCode"));
        let status = nonempty(text(r, "status"))
            .and_then(|s| enhanced_status(&s))
            .or_else(|| diagnostic.as_deref().and_then(enhanced_status));
        let kind = match kind_of {
            None => Kind::Complaint,
            Some(ses) => kind_of_bounce(ses, status.as_deref(), diagnostic.as_deref()),
        };
        out.push(Event {
            provider: Provider::Ses,
            event_id: format!("{sns_message_id}/{}", recipient.to_lowercase()),
            kind,
            recipient,
            status: status_or_default(kind, status),
            diagnostic,
            message_id: message_id.clone(),
            at,
        });
    }
    Ok(out)
}

/// What SES says of a bounce.
#[derive(Clone, Copy)]
enum SesBounce {
    /// `Permanent` because the address does not exist or is on a suppression list.
    NoMailbox,
    Permanent,
    /// `Transient` or `Undetermined`.
    Transient,
}

/// SES's verdict read through brief's own table (`bounce::classify`), so a webhook
/// and a mailed DSN with the same status get the same kind: a "transient" unknown
/// host (5.4.4) is hard, and a "permanent" refusal whose specific status is the
/// sender's problem (5.7.1 policy, 5.2.2 full) is soft. A permanent bounce with no
/// specific status stays hard.
fn kind_of_bounce(ses: SesBounce, status: Option<&str>, diagnostic: Option<&str>) -> Kind {
    let table = bounce::classify(Some("failed"), status, diagnostic.unwrap_or(""), false);
    let specific = status.is_some_and(|s| !s.ends_with(".0"));
    match (ses, table) {
        (SesBounce::NoMailbox, _) | (_, bounce::Kind::Hard) => Kind::Hard,
        (SesBounce::Permanent, _) if !specific => Kind::Hard,
        _ => Kind::Soft,
    }
}

/// brief's Message-ID as SES kept it: in `mail.headers` (when SES includes the
/// original headers), else in `mail.commonHeaders.messageId`. `mail.messageId` is
/// SES's own id, not brief's.
fn original_message_id(n: &Value) -> Option<String> {
    let mail = n.get("mail")?;
    mail.get("headers")
        .and_then(Value::as_array)
        .and_then(|hs| {
            hs.iter()
                .find(|h| text(h, "name").is_some_and(|n| n.eq_ignore_ascii_case("message-id")))
        })
        .and_then(|h| text(h, "value"))
        .or_else(|| {
            mail.pointer("/commonHeaders/messageId")
                .and_then(Value::as_str)
        })
        .and_then(message_id_form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings() {
        let n = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t",
            "Message": "hi", "Timestamp": "2030-01-01T00:00:00.000Z", "Subject": null});
        assert_eq!(
            canonical(&n, "Notification").unwrap(),
            "Message\nhi\nMessageId\nm\nTimestamp\n2030-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let c = serde_json::json!({"Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t",
            "Message": "hi", "Timestamp": "x", "Token": "k", "SubscribeURL": "u"});
        assert!(canonical(&c, "SubscriptionConfirmation")
            .unwrap()
            .contains("SubscribeURL\nu\nTimestamp\nx\nToken\nk\n"));
        assert!(canonical(&serde_json::json!({"Type": "Notification"}), "Notification").is_err());
    }

    #[test]
    fn ses_bounces_and_complaints() {
        let n = serde_json::json!({"notificationType": "Bounce",
            "bounce": {"bounceType": "Transient", "bounceSubType": "General", "timestamp": "2030-01-01T00:00:00.000Z",
              "bouncedRecipients": [
                {"emailAddress": "a@x.org", "status": "5.4.4", "action": "failed", "diagnosticCode": "smtp; 550 5.4.4 Host or domain name not found"},
                {"emailAddress": "b@x.org", "status": "4.2.2", "action": "failed", "diagnosticCode": "smtp; 452 4.2.2 full"}]},
            "mail": {"messageId": "ses-id", "headers": [{"name": "Message-ID", "value": "<brief@news>"}]}});
        let e = events("sns-1", &n).unwrap();
        assert_eq!((e[0].kind, e[1].kind), (Kind::Hard, Kind::Soft));
        assert_eq!(e[0].message_id.as_deref(), Some("<brief@news>"));
        assert_eq!(e[1].event_id, "sns-1/b@x.org");
        let c = serde_json::json!({"notificationType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "c@x.org"}]},
            "mail": {"commonHeaders": {"messageId": "<m@x>"}}});
        let e = events("sns-2", &c).unwrap();
        assert_eq!((e[0].kind, e[0].status.as_deref()), (Kind::Complaint, None));
        assert!(events(
            "sns-3",
            &serde_json::json!({"notificationType": "Delivery"})
        )
        .unwrap()
        .is_empty());
    }
}
