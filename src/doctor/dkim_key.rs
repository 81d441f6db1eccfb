//! The public half of the `[dkim]` private key, as a DKIM key record publishes it
//! (RFC 6376 §3.6.1: `p=` is the base64 SubjectPublicKeyInfo for RSA; RFC 8463: the
//! raw 32-byte key for Ed25519), and the comparison with a published record.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    Ed25519([u8; 32]),
}

impl PublicKey {
    /// The public key of a PEM private key (RSA PKCS#1 or PKCS#8, Ed25519 PKCS#8).
    pub fn from_private_pem(pem: &str) -> Result<PublicKey> {
        if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| anyhow!("not a valid PKCS#1 RSA private key: {e}"))?;
            return Ok(PublicKey::Rsa(key.to_public_key()));
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            return Ok(PublicKey::Rsa(key.to_public_key()));
        }
        match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            Ok(key) => Ok(PublicKey::Ed25519(key.verifying_key().to_bytes())),
            Err(_) => bail!("not an RSA or Ed25519 private key in PEM"),
        }
    }

    /// `rsa` or `ed25519` (the record's `k=`).
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "rsa",
            PublicKey::Ed25519(_) => "ed25519",
        }
    }

    /// The record's `p=` value.
    pub fn base64(&self) -> String {
        match self {
            PublicKey::Rsa(k) => STANDARD.encode(
                k.to_public_key_der()
                    .expect("an RSA public key always encodes")
                    .as_bytes(),
            ),
            PublicKey::Ed25519(k) => STANDARD.encode(k),
        }
    }

    /// The TXT record text to publish.
    pub fn record_text(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.kind(), self.base64())
    }

    /// Whether a published `p=` (base64, whitespace allowed) is this key. RSA keys are
    /// compared as numbers, so a record in the older PKCS#1 form matches too.
    pub fn matches(&self, kind: &str, p: &str) -> bool {
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        let Ok(der) = STANDARD.decode(p) else {
            return false;
        };
        match self {
            PublicKey::Rsa(mine) => {
                kind.eq_ignore_ascii_case("rsa")
                    && rsa::RsaPublicKey::from_public_key_der(&der)
                        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(&der))
                        .is_ok_and(|theirs| theirs == *mine)
            }
            PublicKey::Ed25519(mine) => {
                kind.eq_ignore_ascii_case("ed25519") && der.as_slice() == mine.as_slice()
            }
        }
    }
}

/// The tags of a DKIM key record (`v=DKIM1; k=rsa; p=…`), names lower-cased.
pub fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test key of src/deliver/dkim.rs's tests (RFC 8463's example key).
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_public_key_is_the_rfc_8463_one() {
        let k = PublicKey::from_private_pem(ED25519_PEM).unwrap();
        assert_eq!(k.base64(), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        assert!(k.matches("ed25519", "11qYAYKxCrfVS/7TyWQH Og7hcvPapiMlrwIaaPcHURo="));
        assert!(!k.matches("rsa", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="));
        assert!(!k.matches("ed25519", "not base64!"));
    }

    #[test]
    fn record_tags() {
        let t = tags("v=DKIM1; K=rsa; p=AB CD");
        assert_eq!(t[1], ("k".to_string(), "rsa".to_string()));
        assert_eq!(t[2].1, "AB CD");
    }
}
