//! The public half of a `[dkim]` private key, as a DKIM key record publishes it
//! (RFC 6376 §3.6.1: `p=` is the base64 SubjectPublicKeyInfo for RSA; RFC 8463: the
//! raw 32-byte key for Ed25519), and the comparison with a published record. The keys
//! are read with ring, as the signer reads them.

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::{pem::PemObject, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicKey {
    /// A DER `RSAPublicKey` (PKCS#1).
    Rsa(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// The public key of a PEM private key (RSA PKCS#1 or PKCS#8, Ed25519 PKCS#8).
    pub(super) fn from_private_pem(pem: &str) -> Result<PublicKey> {
        if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            let der = PrivatePkcs1KeyDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| anyhow!("not a valid PKCS#1 RSA private key: {e}"))?;
            let key = RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map_err(|e| anyhow!("not a usable RSA private key: {e}"))?;
            return Ok(PublicKey::Rsa(key.public_key().as_ref().to_vec()));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow!("not a PEM private key (PKCS#1 or PKCS#8): {e}"))?;
        let der = der.secret_pkcs8_der();
        if let Ok(key) = RsaKeyPair::from_pkcs8(der) {
            return Ok(PublicKey::Rsa(key.public_key().as_ref().to_vec()));
        }
        // openssl writes version-1 PKCS#8 (no public key inside).
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| anyhow!("not a usable RSA or Ed25519 private key"))?;
        Ok(PublicKey::Ed25519(key.public_key().as_ref().to_vec()))
    }

    /// `rsa` or `ed25519` (the record's `k=`).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "rsa",
            PublicKey::Ed25519(_) => "ed25519",
        }
    }

    /// The bytes of the record's `p=`.
    fn published_form(&self) -> Vec<u8> {
        match self {
            PublicKey::Rsa(pkcs1) => subject_public_key_info(pkcs1),
            PublicKey::Ed25519(raw) => raw.clone(),
        }
    }

    /// The TXT record text to publish.
    pub(super) fn record_text(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.kind(),
            STANDARD.encode(self.published_form())
        )
    }

    /// Whether a published `p=` (base64, whitespace allowed) is this key. An RSA key
    /// published in the older bare PKCS#1 form matches too.
    pub(super) fn matches(&self, kind: &str, p: &str) -> bool {
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        let Ok(der) = STANDARD.decode(p) else {
            return false;
        };
        kind.eq_ignore_ascii_case(self.kind())
            && match self {
                PublicKey::Rsa(pkcs1) => der == *pkcs1 || der == self.published_form(),
                PublicKey::Ed25519(raw) => der == *raw,
            }
    }
}

/// `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }` (DER,
/// which has one encoding per value, so byte equality is key equality).
fn subject_public_key_info(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x00]; // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(der_element(0x03, &bits));
    der_element(0x30, &body)
}

fn der_element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The tags of a DKIM key record (`v=DKIM1; k=rsa; p=…`), names lower-cased.
pub(super) fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8463's example key.
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_public_key_is_the_rfc_8463_one() {
        let k = PublicKey::from_private_pem(ED25519_PEM).unwrap();
        assert_eq!(
            k.record_text(),
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        );
        assert!(k.matches("ed25519", "11qYAYKxCrfVS/7TyWQH Og7hcvPapiMlrwIaaPcHURo="));
        assert!(!k.matches("rsa", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="));
        assert!(!k.matches("ed25519", "not base64!"));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_element(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der_element(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn record_tags() {
        let t = tags("v=DKIM1; K=rsa; p=AB CD");
        assert_eq!(t[1], ("k".to_string(), "rsa".to_string()));
        assert_eq!(t[2].1, "AB CD");
    }
}
