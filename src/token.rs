//! Keyed values: unsubscribe tokens and Message-IDs.
//!
//! A token is the recipient's address and the edition, encrypted and authenticated with
//! AES-SIV under a key derived from the secret *and the newsletter's list id* (so a
//! token from one newsletter means nothing to another). It is opaque (no address or
//! sequential id in clear), deterministic (the same recipient gets the same link, so a
//! resend is byte-identical), and verified in constant time by the AEAD. The first byte
//! is a key id derived from the secret, so a retired secret can still be tried for old
//! links while they are honoured.

use aes_siv::siv::Aes128Siv;
use aes_siv::KeyInit;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock;
use crate::config::Config;
use chrono::{DateTime, Utc};

type HmacSha256 = Hmac<Sha256>;

/// The key the `outbox` transport falls back to when no secret is set, so a fresh clone
/// runs. Anyone can read it in the binary: it never signs links that reach readers.
pub const DEVELOPMENT_SECRET: &[u8] = b"brief-development-secret-not-for-real-mail";

/// How to make a secret that passes [`weakness`].
pub const HOW_TO_MAKE_A_SECRET: &str = "make one with `openssl rand -base64 32`";

/// The estimated entropy a secret needs. The estimate reads a random string low (16
/// random bytes in hex show 100–130 bits, 32 in base64 about 200), and patterns much
/// lower, so the bar sits under what real random keys show.
const MIN_SECRET_BITS: f64 = 90.0;

/// Why `secret` must not sign real links (it is the development key, or too easy to
/// guess), or `None` when it may.
pub fn weakness(secret: &[u8]) -> Option<String> {
    if secret == DEVELOPMENT_SECRET {
        return Some("is the development key built into brief, which anyone can read".into());
    }
    let bits = estimated_bits(secret);
    (bits < MIN_SECRET_BITS).then(|| {
        format!(
            "is too easy to guess (an estimated {bits:.0} bits of entropy; at least {MIN_SECRET_BITS:.0} needed)"
        )
    })
}

/// A cautious entropy estimate: the information in the bytes, and in the steps from
/// one byte to the next (so `aaaa…`, `abab…` and `0123…` all count as little), whichever
/// is smaller.
fn estimated_bits(secret: &[u8]) -> f64 {
    let steps: Vec<u8> = secret
        .windows(2)
        .map(|pair| pair[1].wrapping_sub(pair[0]))
        .collect();
    shannon_bits(secret).min(shannon_bits(&steps))
}

/// Length times the Shannon entropy of the byte frequencies.
fn shannon_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let c = c as f64;
            -c * (c / total).log2()
        })
        .sum()
}

const VERSION: u8 = 1;
const FLAG_TEST: u8 = 1;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub email: String,
    pub edition: String,
    /// Issued by a test send: inert.
    pub test: bool,
}

/// One secret's derived keys.
#[derive(Clone)]
struct Key {
    id: u8,
    siv_key: [u8; 32],
    msgid_key: [u8; 32],
    /// A retired key stops verifying at this instant (by `clock::now()`).
    expires: Option<DateTime<Utc>>,
}

impl Key {
    fn derive(secret: &[u8], list_id: &str) -> Key {
        let derive = |label: &str| -> [u8; 32] {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(label.as_bytes());
            mac.update(b"\0");
            mac.update(list_id.as_bytes());
            mac.finalize().into_bytes().into()
        };
        Key {
            id: derive("brief/key-id")[0],
            siv_key: derive("brief/token/v1"),
            msgid_key: derive("brief/message-id/v1"),
            expires: None,
        }
    }
}

/// The keys of one newsletter: the current secret, and optionally a retired one that
/// still verifies old links.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl Keyring {
    pub fn new(secret: &[u8], list_id: &str) -> Keyring {
        Keyring {
            current: Key::derive(secret, list_id),
            previous: None,
        }
    }

    /// Adds a retired secret that still verifies (but never issues) tokens.
    pub fn with_previous(mut self, secret: &[u8], list_id: &str) -> Keyring {
        self.previous = Some(Key::derive(secret, list_id));
        self
    }

    /// Like [`Keyring::with_previous`], but the retired secret stops verifying at
    /// `expires` (checked against `clock::now()` at each verification, so a long-running
    /// `brief serve` honours it too).
    pub fn with_previous_until(
        mut self,
        secret: &[u8],
        list_id: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Keyring {
        let mut key = Key::derive(secret, list_id);
        key.expires = expires;
        self.previous = Some(key);
        self
    }

    /// The keyring that verifies this newsletter's links: the current secret (required)
    /// and the retired one while it is still honoured.
    pub fn for_verifying(config: &Config) -> anyhow::Result<Keyring> {
        let list_id = &config.newsletter.list_id;
        let ring = Keyring::new(&config.secret(false)?, list_id);
        Ok(match config.previous_secret() {
            Some(old) => {
                if let Some(why) = weakness(&old) {
                    let name = config
                        .unsubscribe
                        .previous_secret_env
                        .as_deref()
                        .unwrap_or("");
                    anyhow::bail!("the retired secret in ${name} {why}: links signed with it could be forged; unset ${name} or drop `previous_secret_env`");
                }
                ring.with_previous_until(&old, list_id, config.previous_secret_expiry()?)
            }
            None => {
                if let Some(name) = &config.unsubscribe.previous_secret_env {
                    tracing::warn!(
                        "${name} (previous_secret_env) is not set or too short: links signed with the retired secret are refused"
                    );
                }
                ring
            }
        })
    }

    /// The unsubscribe token for `email` in `edition`.
    pub fn issue(&self, email: &str, edition: &str, test: bool) -> String {
        let key = &self.current;
        let mut plain = Vec::with_capacity(3 + edition.len() + email.len());
        plain.push(VERSION);
        plain.push(if test { FLAG_TEST } else { 0 });
        // Slugs are short; anything longer is truncated by the length byte's range.
        let edition = truncate_at_char(edition, 255);
        plain.push(edition.len() as u8);
        plain.extend_from_slice(edition.as_bytes());
        plain.extend_from_slice(email.as_bytes());
        let mut cipher = Aes128Siv::new((&key.siv_key).into());
        let sealed = cipher
            .encrypt([[key.id]], &plain)
            .expect("SIV encryption of a small buffer cannot fail");
        let mut raw = Vec::with_capacity(1 + sealed.len());
        raw.push(key.id);
        raw.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a token and returns what it says; `None` for anything forged, altered,
    /// malformed, from another newsletter or from a secret no longer held.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        let (&id, sealed) = raw.split_first()?;
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .filter(|k| k.id == id)
            .filter(|k| k.expires.is_none_or(|at| clock::now() < at))
            .find_map(|k| open(k, sealed))
    }

    /// A Message-ID that is stable for one (namespace, edition, recipient) and
    /// unguessable without the secret. `namespace` keeps test sends apart.
    pub fn message_id(&self, namespace: &str, edition: &str, email: &str, domain: &str) -> String {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.current.msgid_key).expect("any key length");
        for part in [namespace, edition, &email.to_lowercase()] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        let digest = mac.finalize().into_bytes();
        format!("<{}@{}>", base32(&digest[..20]), domain)
    }
}

/// The VERP envelope sender of one message: `local+TOKEN@domain` of `return_path`,
/// TOKEN the local part of the message's keyed Message-ID ([`Keyring::message_id`]):
/// opaque, lowercase (it survives MTAs that fold case), found again in the journal.
pub fn verp_address(return_path: &str, message_id: &str) -> Option<String> {
    let (local, domain) = return_path.rsplit_once('@')?;
    let token = message_id.trim_start_matches('<').split('@').next()?;
    (!token.is_empty()).then(|| format!("{local}+{token}@{domain}"))
}

fn open(key: &Key, sealed: &[u8]) -> Option<Claims> {
    let mut cipher = Aes128Siv::new((&key.siv_key).into());
    let plain = cipher.decrypt([[key.id]], sealed).ok()?;
    let (&version, rest) = plain.split_first()?;
    if version != VERSION {
        return None;
    }
    let (&flags, rest) = rest.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    let edition = std::str::from_utf8(&rest[..len]).ok()?.to_string();
    let email = std::str::from_utf8(&rest[len..]).ok()?.to_string();
    Some(Claims {
        email,
        edition,
        test: flags & FLAG_TEST != 0,
    })
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lower-case RFC 4648 base32 without padding (safe in a Message-ID's local part).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The one-click unsubscribe URL for a token: `<base_url>/u/<token>`. `brief serve`
/// answers this path (behind the proxy that maps `base_url` to it).
pub fn unsubscribe_url(base_url: &str, token: &str) -> String {
    format!("{}/u/{}", base_url.trim_end_matches('/'), token)
}

/// The preference-centre URL for a token: `<base_url>/p/<token>` (`brief serve`).
pub fn preferences_url(base_url: &str, token: &str) -> String {
    format!("{}/p/{}", base_url.trim_end_matches('/'), token)
}

/// The web version ("view in browser") of an edition: `<base_url>/<slug>/`, the page
/// `brief archive` writes at `<slug>/index.html`.
pub fn web_url(base_url: &str, slug: &str) -> String {
    format!("{}/{}/", base_url.trim_end_matches('/'), slug)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::new(b"0123456789abcdef0123456789abcdef", "the-brief.example.org")
    }

    #[test]
    fn round_trip_and_determinism() {
        let k = ring();
        let t = k.issue("Ann@Example.org", "2024-10-25", false);
        assert_eq!(t, k.issue("Ann@Example.org", "2024-10-25", false));
        assert!(!t.to_lowercase().contains("example"));
        let c = k.verify(&t).unwrap();
        assert_eq!(c.email, "Ann@Example.org");
        assert_eq!(c.edition, "2024-10-25");
        assert!(!c.test);
        assert!(k.verify(&k.issue("a@b.c", "e", true)).unwrap().test);
    }

    #[test]
    fn other_newsletter_and_rotation() {
        let k = ring();
        let other = Keyring::new(b"0123456789abcdef0123456789abcdef", "other.example.org");
        let t = k.issue("a@b.c", "e", false);
        assert_eq!(other.verify(&t), None);
        let rotated = Keyring::new(
            b"a brand new secret of some length",
            "the-brief.example.org",
        )
        .with_previous(b"0123456789abcdef0123456789abcdef", "the-brief.example.org");
        assert_eq!(rotated.verify(&t).unwrap().email, "a@b.c");
        let fresh = Keyring::new(
            b"a brand new secret of some length",
            "the-brief.example.org",
        );
        assert_eq!(fresh.verify(&t), None);
    }

    #[test]
    fn retired_secret_expires() {
        let old = ring();
        let t = old.issue("a@b.c", "e", false);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let new_secret = b"a brand new secret of some length";
        let past = Keyring::new(new_secret, "the-brief.example.org").with_previous_until(
            b"0123456789abcdef0123456789abcdef",
            "the-brief.example.org",
            Some(at("2000-01-01T00:00:00Z")),
        );
        assert_eq!(past.verify(&t), None);
        let future = Keyring::new(new_secret, "the-brief.example.org").with_previous_until(
            b"0123456789abcdef0123456789abcdef",
            "the-brief.example.org",
            Some(at("2999-01-01T00:00:00Z")),
        );
        assert_eq!(future.verify(&t).unwrap().email, "a@b.c");
    }

    #[test]
    fn message_id_is_stable_and_case_insensitive() {
        let k = ring();
        let a = k.message_id("send", "e1", "Ann@Example.org", "news.example.org");
        assert_eq!(
            a,
            k.message_id("send", "e1", "ann@example.org", "news.example.org")
        );
        assert_ne!(
            a,
            k.message_id("test", "e1", "ann@example.org", "news.example.org")
        );
        assert!(a.starts_with('<') && a.ends_with("@news.example.org>"));
    }

    #[test]
    fn weak_secrets_are_named() {
        let weak: [&[u8]; 6] = [
            b"aaaaaaaaaaaaaaaa",
            b"                ",
            DEVELOPMENT_SECRET,
            b"0123456789abcdef0123456789abcdef",
            b"abababababababababababababababababababab",
            b"short",
        ];
        for secret in weak {
            assert!(
                weakness(secret).is_some(),
                "{:?}",
                String::from_utf8_lossy(secret)
            );
        }
        assert!(weakness(DEVELOPMENT_SECRET)
            .unwrap()
            .contains("development key"));
        // What `openssl rand -base64 32` and `-hex 32` print.
        for strong in [
            "hY3k9Qz0b1mRr5sVt8WcXp2LdN7fG4jKaE6uBwIoCyM=",
            "5f1c9a7e3b2d8046f9e1a3c5b7d90e2f4a6c8b0d1e3f5a7c9b2d4e6f8a0c1b3d",
        ] {
            assert_eq!(weakness(strong.as_bytes()), None, "{strong}");
        }
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_refused(email in "[a-z]{1,10}@[a-z]{1,10}\\.org", bit in 0usize..400) {
            let k = ring();
            let t = k.issue(&email, "ed", false);
            let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(k.verify(&URL_SAFE_NO_PAD.encode(raw)), None);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            let _ = ring().verify(&s);
        }
    }
}
