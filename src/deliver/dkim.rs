//! DKIM signing (RFC 6376; Ed25519 per RFC 8463) of the messages brief builds.
//!
//! The key is loaded once per send; each recipient's message is signed after it is
//! rendered, because its body (unsubscribe links) and some headers are personal. Both
//! canonicalizations are `relaxed`. The body is canonicalized and hashed as a stream over
//! the message's slices, so no second copy of the message is built; only the header
//! block (about a kilobyte) is copied.

use crate::config::Dkim;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The headers the signature covers, in `h=` order (the product contract).
pub const SIGNED_HEADERS: [&str; 8] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Longest header line written (RFC 5322's recommended limit).
const MAX_LINE: usize = 78;

enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A loaded signing key with the domain and selector it signs for.
pub struct Signer {
    key: Key,
    domain: String,
    selector: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm())
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish()
    }
}

impl Signer {
    /// Loads `[dkim]`'s key; `key_file` is the resolved path of `dkim.key_file`. Every
    /// error names the file.
    pub fn load(dkim: &Dkim, key_file: &Path) -> Result<Signer> {
        let pem = std::fs::read_to_string(key_file)
            .with_context(|| format!("[dkim] key_file: cannot read {}", key_file.display()))?;
        Signer::from_pem(&pem, &dkim.domain, &dkim.selector)
            .with_context(|| format!("[dkim] key_file {}", key_file.display()))
    }

    /// Parses a PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
    pub fn from_pem(pem: &str, domain: &str, selector: &str) -> Result<Signer> {
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !valid_name(domain) {
            bail!("[dkim] domain `{domain}` is not a domain name");
        }
        if !valid_name(selector) {
            bail!("[dkim] selector `{selector}` is not a valid selector (letters, digits, `-`, `_`, dots)");
        }
        let label = pem
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("-----BEGIN "))
            .ok_or_else(|| anyhow!("not a PEM file (no `-----BEGIN` line)"))?;
        let key = match label {
            "-----BEGIN RSA PRIVATE KEY-----" => Key::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|e| anyhow!("not a valid PKCS#1 RSA private key: {e}"))?,
            )),
            "-----BEGIN PRIVATE KEY-----" => match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                Ok(k) => Key::Rsa(Box::new(k)),
                Err(rsa_err) => match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                    Ok(k) => Key::Ed25519(Box::new(k)),
                    Err(_) => bail!(
                        "a PKCS#8 private key that is neither RSA nor Ed25519 ({rsa_err}); DKIM signs with rsa-sha256 or ed25519-sha256"
                    ),
                },
            },
            "-----BEGIN ENCRYPTED PRIVATE KEY-----" => bail!(
                "the key is encrypted; brief needs an unencrypted key (`openssl pkey -in KEY -out PLAIN`)"
            ),
            "-----BEGIN PUBLIC KEY-----" | "-----BEGIN RSA PUBLIC KEY-----" => {
                bail!("this is a public key; key_file must hold the private key")
            }
            other => bail!(
                "unsupported key type `{}`: DKIM keys are RSA or Ed25519 private keys",
                other.trim_matches('-')
            ),
        };
        if let Key::Rsa(k) = &key {
            let bits = k.size() * 8;
            if bits < 1024 {
                bail!("the RSA key has {bits} bits; receivers reject DKIM keys under 1024 bits (use 2048)");
            }
        }
        Ok(Signer {
            key,
            domain: domain.to_string(),
            selector: selector.to_string(),
        })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The `DKIM-Signature:` header field (folded, CRLF-terminated) for the message
    /// made of `slices` (CRLF line ends), signed at `timestamp` (Unix seconds).
    pub fn sign<'a>(
        &self,
        slices: impl IntoIterator<Item = &'a [u8]>,
        timestamp: i64,
    ) -> Result<Vec<u8>> {
        let mut head = Vec::with_capacity(2048);
        let mut body = BodyHasher::default();
        let mut blank = BlankLine::default();
        let mut in_body = false;
        for s in slices {
            if in_body {
                body.update(s);
                continue;
            }
            match blank.find(s) {
                Some(end) => {
                    head.extend_from_slice(&s[..end]);
                    body.update(&s[end..]);
                    in_body = true;
                }
                None => head.extend_from_slice(s),
            }
        }
        let bh = base64::engine::general_purpose::STANDARD.encode(body.finish());

        let mut field = Folder::new("DKIM-Signature:");
        for tag in [
            "v=1;".to_string(),
            format!("a={};", self.algorithm()),
            "c=relaxed/relaxed;".to_string(),
            format!("d={};", self.domain),
            format!("s={};", self.selector),
            format!("t={timestamp};"),
        ] {
            field.word(" ", &tag);
        }
        for (i, name) in SIGNED_HEADERS.iter().enumerate() {
            let last = i + 1 == SIGNED_HEADERS.len();
            let word = format!(
                "{}{name}{}",
                if i == 0 { "h=" } else { "" },
                if last { ";" } else { ":" }
            );
            // Folding whitespace is allowed around the colons of h=.
            field.word(if i == 0 { " " } else { "" }, &word);
        }
        field.word(" ", &format!("bh={bh};"));
        field.word(" ", "b=");

        let mut hasher = Sha256::new();
        let mut canon = Vec::with_capacity(256);
        let fields = header_fields(&head);
        for name in SIGNED_HEADERS {
            // The last instance of each name (there is one of each in our messages).
            if let Some(f) = fields.iter().rev().find(|f| field_name_is(f, name)) {
                canon.clear();
                canonicalize_header(f, &mut canon);
                canon.extend_from_slice(b"\r\n");
                hasher.update(&canon);
            }
        }
        canon.clear();
        canonicalize_header(&field.out, &mut canon);
        hasher.update(&canon);
        let digest = hasher.finalize();

        let signature = match &self.key {
            Key::Rsa(k) => k
                .sign_with_rng(
                    &mut rsa::rand_core::OsRng,
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &digest,
                )
                .map_err(|e| anyhow!("DKIM signing failed: {e}"))?,
            Key::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(&digest).to_bytes().to_vec()
            }
        };
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        field.fill(&b);
        field.out.extend_from_slice(b"\r\n");
        Ok(field.out)
    }
}

/// Builds a header field, folding before a word that would pass [`MAX_LINE`].
struct Folder {
    out: Vec<u8>,
    col: usize,
}

impl Folder {
    fn new(start: &str) -> Folder {
        Folder {
            out: start.as_bytes().to_vec(),
            col: start.len(),
        }
    }

    /// Appends `sep` and `word`, or a fold and `word` if they do not fit.
    fn word(&mut self, sep: &str, word: &str) {
        if self.col + sep.len() + word.len() > MAX_LINE {
            self.out.extend_from_slice(b"\r\n ");
            self.col = 1;
        } else {
            self.out.extend_from_slice(sep.as_bytes());
            self.col += sep.len();
        }
        self.out.extend_from_slice(word.as_bytes());
        self.col += word.len();
    }

    /// Appends `value` (base64: folding whitespace may go anywhere), filling lines.
    fn fill(&mut self, mut value: &str) {
        while !value.is_empty() {
            if self.col >= MAX_LINE {
                self.out.extend_from_slice(b"\r\n ");
                self.col = 1;
            }
            let n = (MAX_LINE - self.col).min(value.len());
            self.out.extend_from_slice(&value.as_bytes()[..n]);
            self.col += n;
            value = &value[n..];
        }
    }
}

/// Finds the empty line that ends the header block, across slices.
#[derive(Default)]
struct BlankLine {
    /// How much of CR LF CR LF was matched at the end of what was seen so far.
    matched: u8,
}

impl BlankLine {
    /// The offset in `s` just after the blank line, if it ends in `s`.
    fn find(&mut self, s: &[u8]) -> Option<usize> {
        for (i, &b) in s.iter().enumerate() {
            self.matched = match (b, self.matched) {
                (b'\r', 2) => 3,
                (b'\r', _) => 1,
                (b'\n', 1) => 2,
                (b'\n', 3) => return Some(i + 1),
                _ => 0,
            };
        }
        None
    }
}

/// Splits a header block into fields (each with its folded continuation lines, without
/// the final CRLF).
fn header_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < head.len() {
        if head[i] == b'\r' && head[i + 1] == b'\n' {
            let next = head.get(i + 2);
            if !matches!(next, Some(b' ' | b'\t')) {
                if i > start {
                    fields.push(&head[start..i]);
                }
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    fields
}

fn field_name_is(field: &[u8], name: &str) -> bool {
    match field.iter().position(|&b| b == b':') {
        Some(colon) => field[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes()),
        None => false,
    }
}

/// Relaxed header canonicalization (RFC 6376 3.4.2), without the trailing CRLF: name
/// lowercased, the value unfolded, whitespace runs as one space, none around the colon
/// or at the end.
fn canonicalize_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    out.extend(
        field[..colon]
            .trim_ascii_end()
            .iter()
            .map(u8::to_ascii_lowercase),
    );
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in field.get(colon + 1..).unwrap_or_default() {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
}

/// Relaxed body canonicalization (RFC 6376 3.4.4) fed straight into SHA-256: runs of
/// spaces and tabs become one space, whitespace at line ends is dropped, empty lines
/// at the end are dropped, and a non-empty body ends with one CRLF. Bytes that need no
/// change are hashed in runs, straight from the input.
#[derive(Default)]
struct BodyHasher {
    hasher: Sha256,
    /// Line ends not yet hashed (they vanish if only empty lines follow).
    crlfs: usize,
    /// Whitespace seen since the last content byte, not yet hashed.
    space: bool,
    /// A CR whose LF may be in the next slice.
    cr: bool,
    nonempty: bool,
}

impl BodyHasher {
    fn pending(&self) -> bool {
        self.crlfs > 0 || self.space || self.cr
    }

    /// Hashes the pending line ends and space, before content.
    fn flush_pending(&mut self) {
        for _ in 0..self.crlfs {
            self.hasher.update(b"\r\n");
        }
        self.crlfs = 0;
        if self.space {
            self.hasher.update(b" ");
            self.space = false;
        }
        self.nonempty = true;
    }

    fn emit(&mut self, run: &[u8]) {
        if !run.is_empty() {
            self.hasher.update(run);
            self.nonempty = true;
        }
    }

    fn update(&mut self, data: &[u8]) {
        let content = |b: u8| !matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut run = 0;
        let mut i = 0;
        while i < data.len() {
            if !self.pending() {
                // The common cases, hashed as they are: content, one space before
                // content, a line end before content.
                while i < data.len() && content(data[i]) {
                    i += 1;
                }
                let Some(&b) = data.get(i) else { break };
                if b == b' ' && data.get(i + 1).is_some_and(|&c| content(c)) {
                    i += 2;
                    continue;
                }
                if b == b'\r'
                    && data.get(i + 1) == Some(&b'\n')
                    && data.get(i + 2).is_some_and(|&c| content(c))
                {
                    i += 3;
                    continue;
                }
            }
            let b = data[i];
            self.emit(&data[run..i]);
            run = i + 1;
            if self.cr {
                self.cr = false;
                if b == b'\n' {
                    self.space = false;
                    self.crlfs += 1;
                    i += 1;
                    continue;
                }
                // A bare CR is content.
                self.flush_pending();
                self.hasher.update(b"\r");
            }
            match b {
                b'\r' => self.cr = true,
                b' ' | b'\t' => self.space = true,
                _ => {
                    self.flush_pending();
                    run = i;
                }
            }
            i += 1;
        }
        self.emit(&data[run..]);
    }

    fn finish(mut self) -> [u8; 32] {
        if self.cr {
            self.cr = false;
            self.flush_pending();
            self.hasher.update(b"\r");
        }
        if self.nonempty {
            self.hasher.update(b"\r\n");
        }
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: relaxed body canonicalization written as the RFC states it, on a
    /// whole body at once.
    fn reference_body(body: &[u8]) -> Vec<u8> {
        let text = body.to_vec();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = &text[..];
        loop {
            match rest.windows(2).position(|w| w == b"\r\n") {
                Some(p) => {
                    lines.push(rest[..p].to_vec());
                    rest = &rest[p + 2..];
                }
                None => {
                    lines.push(rest.to_vec());
                    break;
                }
            }
        }
        // The piece after the last CRLF is an unterminated line (empty if the body
        // ended with CRLF).
        let mut out_lines: Vec<Vec<u8>> = lines
            .iter()
            .map(|l| {
                let mut o = Vec::new();
                let mut space = false;
                for &b in l {
                    if b == b' ' || b == b'\t' {
                        space = true;
                    } else {
                        if space {
                            o.push(b' ');
                        }
                        space = false;
                        o.push(b);
                    }
                }
                o
            })
            .collect();
        while out_lines.last().is_some_and(Vec::is_empty) {
            out_lines.pop();
        }
        let mut out = Vec::new();
        for l in out_lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn hash_in_slices(body: &[u8], cuts: &[usize]) -> [u8; 32] {
        let mut h = BodyHasher::default();
        let mut at = 0;
        for &c in cuts {
            let c = c.min(body.len()).max(at);
            h.update(&body[at..c]);
            at = c;
        }
        h.update(&body[at..]);
        h.finish()
    }

    #[test]
    fn rfc6376_example_body() {
        // RFC 6376 3.4.6: " C \r\nD \t E\r\n\r\n\r\n" canonicalizes to " C\r\nD E\r\n".
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        let want: [u8; 32] = Sha256::digest(b" C\r\nD E\r\n").into();
        assert_eq!(hash_in_slices(body, &[]), want);
        for cut in 0..body.len() {
            assert_eq!(hash_in_slices(body, &[cut]), want, "cut at {cut}");
        }
    }

    #[test]
    fn rfc6376_example_headers() {
        // RFC 6376 3.4.6: "A: X" and "B : Y\t\r\n\tZ  " become "a:X" and "b:Y Z".
        let mut out = Vec::new();
        canonicalize_header(b"A: X", &mut out);
        assert_eq!(out, b"a:X");
        out.clear();
        canonicalize_header(b"B : Y\t\r\n\tZ  ", &mut out);
        assert_eq!(out, b"b:Y Z");
        let fields = header_fields(b"A: X\r\nB : Y\t\r\n\tZ  \r\n");
        assert_eq!(fields, [&b"A: X"[..], &b"B : Y\t\r\n\tZ  "[..]]);
    }

    #[test]
    fn empty_body_hashes_as_empty() {
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(hash_in_slices(b"", &[]), empty);
        assert_eq!(hash_in_slices(b"\r\n\r\n  \r\n", &[]), empty);
    }

    #[test]
    fn blank_line_is_found_across_slices() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nbody\r\n";
        for cut in 0..msg.len() {
            let mut blank = BlankLine::default();
            let (x, y) = msg.split_at(cut);
            let found = match blank.find(x) {
                Some(e) => e,
                None => cut + blank.find(y).expect("found"),
            };
            assert_eq!(found, 14, "cut at {cut}");
        }
        assert_eq!(BlankLine::default().find(b"A: 1\r\r\n\r\nx"), Some(9));
    }

    #[test]
    fn folding_keeps_lines_short() {
        let mut f = Folder::new("DKIM-Signature:");
        f.word(" ", "v=1;");
        f.word(" ", &format!("d={};", "x".repeat(50)));
        f.word(" ", "b=");
        f.fill(&"A".repeat(344));
        let s = String::from_utf8(f.out).unwrap();
        for line in s.split("\r\n") {
            assert!(line.len() <= MAX_LINE, "{line:?}");
        }
        assert_eq!(s.replace("\r\n ", "").matches('A').count(), 344);
    }

    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEpkvFJDV5InexbYldcYqpQnc+idRCmcNc24ufz75pzb\n-----END PRIVATE KEY-----\n";

    #[test]
    fn keys_that_cannot_sign_are_refused_with_a_reason() {
        let err = |pem: &str| {
            format!(
                "{:#}",
                Signer::from_pem(pem, "news.example.org", "brief").unwrap_err()
            )
        };
        assert!(err("hello").contains("not a PEM file"));
        assert!(
            err("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n")
                .contains("unsupported key type")
        );
        assert!(
            err("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
                .contains("PKCS#1")
        );
        assert!(
            err("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")
                .contains("public key")
        );
        assert!(Signer::from_pem(ED25519_PEM, "bad domain", "brief").is_err());
        assert!(Signer::from_pem(ED25519_PEM, "news.example.org", "a;b").is_err());
        let ok = Signer::from_pem(ED25519_PEM, "news.example.org", "brief").unwrap();
        assert_eq!(ok.algorithm(), "ed25519-sha256");
    }

    #[test]
    fn signature_header_is_folded_and_names_the_contract_headers() {
        let signer = Signer::from_pem(ED25519_PEM, "news.example.org", "brief").unwrap();
        let msg = b"From: a@b.org\r\nTo: c@d.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let h = String::from_utf8(signer.sign([&msg[..]], 1_700_000_000).unwrap()).unwrap();
        assert!(h.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
        assert!(h.ends_with("\r\n"));
        for line in h.trim_end().split("\r\n") {
            assert!(line.len() <= MAX_LINE, "{line:?}");
        }
        let unfolded = h.replace("\r\n ", " ");
        assert!(unfolded.replace(' ', "").contains(
            "h=from:to:subject:date:message-id:list-id:list-unsubscribe:list-unsubscribe-post;"
        ));
        assert!(unfolded.contains(" t=1700000000;"));
        let bh = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"body\r\n"));
        assert!(unfolded.contains(&format!(" bh={bh};")), "{unfolded}");
        // Split anywhere, the message signs to the same body hash.
        for cut in 0..msg.len() {
            let h2 = signer
                .sign([&msg[..cut], &msg[cut..]], 1_700_000_000)
                .unwrap();
            assert_eq!(h2, h.as_bytes(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn streamed_body_hash_matches_the_reference(
            body in proptest::collection::vec(proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n', b'=', b'.']), 0..80),
            cuts in proptest::collection::vec(0usize..80, 0..4),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let want: [u8; 32] = Sha256::digest(reference_body(&body)).into();
            proptest::prop_assert_eq!(hash_in_slices(&body, &cuts), want);
        }
    }
}
