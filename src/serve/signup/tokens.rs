//! The signup's own tokens: confirmation links (what was asked and when; they expire)
//! and proof-of-work challenges. Sealed like unsubscribe tokens (AES-SIV, see
//! [`crate::token`]) under keys derived for this purpose alone, so none of them can
//! stand in for an unsubscribe token, or for one another.

use crate::config::Config;
use crate::token::Keyring;
use anyhow::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

const CONFIRM: &str = "confirm";
const CHALLENGE: &str = "pow";
/// How long a proof-of-work challenge may be answered.
pub(super) const CHALLENGE_VALID: Duration = Duration::from_secs(3600);

/// What a reader asked for: carried by the confirmation link itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ask {
    #[serde(rename = "e")]
    pub email: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "l")]
    pub lists: Vec<String>,
    /// Unix seconds.
    #[serde(rename = "t")]
    pub issued: i64,
    /// `signup form` or `api`.
    #[serde(rename = "f")]
    pub form: String,
    /// Names the pending signup (and the mails it causes).
    #[serde(rename = "k")]
    pub nonce: String,
}

/// What a confirmation link turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    Valid(Ask),
    Expired,
    Invalid,
}

pub(crate) struct Tokens {
    ring: Keyring,
    confirm_within: Duration,
}

impl Tokens {
    pub(crate) fn new(config: &Config) -> Result<Tokens> {
        let label = format!("{}/signup", config.newsletter.list_id);
        let mut ring = Keyring::new(&config.secret(false)?, &label);
        if let Some(old) = config.previous_secret() {
            ring = ring.with_previous_until(&old, &label, config.previous_secret_expiry()?);
        }
        Ok(Tokens {
            ring,
            confirm_within: config.signup.confirm_within,
        })
    }

    pub(crate) fn confirm(&self, ask: &Ask) -> String {
        let payload = serde_json::to_string(ask).expect("an Ask serializes");
        self.ring.issue(&payload, CONFIRM, false)
    }

    pub(crate) fn open_confirm(&self, token: &str, now: DateTime<Utc>) -> Opened {
        let Some(claims) = self.ring.verify(token) else {
            return Opened::Invalid;
        };
        let ask = match serde_json::from_str::<Ask>(&claims.email) {
            Ok(ask) if claims.edition == CONFIRM => ask,
            _ => return Opened::Invalid,
        };
        let within = i64::try_from(self.confirm_within.as_secs()).unwrap_or(i64::MAX);
        if now.timestamp() >= ask.issued.saturating_add(within) || ask.issued > now.timestamp() + 60
        {
            Opened::Expired
        } else {
            Opened::Valid(ask)
        }
    }

    /// A fresh challenge: when it was made, and a random part.
    pub(crate) fn challenge(&self, now: DateTime<Utc>) -> String {
        self.ring.issue(
            &format!("{}.{}", now.timestamp(), nonce()),
            CHALLENGE,
            false,
        )
    }

    /// When `challenge` was made (Unix seconds), if it is one of ours.
    pub(crate) fn challenge_made(&self, challenge: &str) -> Option<i64> {
        let claims = self.ring.verify(challenge)?;
        if claims.edition != CHALLENGE {
            return None;
        }
        claims.email.split('.').next()?.parse().ok()
    }
}

/// Leading zero bits of SHA-256(`challenge:work`): what the form's script searches for.
pub(crate) fn leading_zero_bits(challenge: &str, work: &str) -> u32 {
    let digest = Sha256::digest(format!("{challenge}:{work}").as_bytes());
    let mut bits = 0;
    for byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// 96 random bits, URL-safe.
pub(crate) fn nonce() -> String {
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(within: u64) -> Tokens {
        Tokens {
            ring: Keyring::new(b"0123456789abcdef0123456789abcdef", "x.example.org/signup"),
            confirm_within: Duration::from_secs(within),
        }
    }

    fn ask(issued: i64) -> Ask {
        Ask {
            email: "ann@example.org".into(),
            name: "Ann".into(),
            lists: vec!["local".into()],
            issued,
            form: "signup form".into(),
            nonce: nonce(),
        }
    }

    #[test]
    fn confirm_links_expire_and_cannot_be_forged() {
        let t = tokens(3600);
        let now = crate::clock::now();
        let a = ask(now.timestamp());
        let link = t.confirm(&a);
        assert_eq!(t.open_confirm(&link, now), Opened::Valid(a.clone()));
        assert_eq!(
            t.open_confirm(&link, now + chrono::Duration::seconds(3600)),
            Opened::Expired
        );
        let mut forged = link.clone().into_bytes();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.open_confirm(&String::from_utf8(forged).unwrap(), now),
            Opened::Invalid
        );
        // An unsubscribe token of the same newsletter is not a confirmation link.
        let unsubscribe = Keyring::new(b"0123456789abcdef0123456789abcdef", "x.example.org").issue(
            "ann@example.org",
            "confirm",
            false,
        );
        assert_eq!(t.open_confirm(&unsubscribe, now), Opened::Invalid);
        // Nor is a challenge.
        assert_eq!(t.open_confirm(&t.challenge(now), now), Opened::Invalid);
    }

    #[test]
    fn challenges_are_ours_and_dated() {
        let t = tokens(3600);
        let now = crate::clock::now();
        let c = t.challenge(now);
        assert_eq!(t.challenge_made(&c), Some(now.timestamp()));
        assert_eq!(t.challenge_made("forged"), None);
        assert_eq!(t.challenge_made(&t.confirm(&ask(now.timestamp()))), None);
        let work = (0u32..)
            .map(|i| i.to_string())
            .find(|w| leading_zero_bits(&c, w) >= 8)
            .unwrap();
        assert!(leading_zero_bits(&c, &work) >= 8);
    }
}
