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
use ring::signature::{Ed25519KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls::pki_types::{pem::PemObject, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The headers the signature covers, in `h=` order: the product contract, then the
/// headers whose change alters what the reader sees or where a reply goes. Each is
/// listed once more than it occurs ("over-signed"), so a second copy added above the
/// signed one (which many mail readers show instead) breaks the signature.
pub const SIGNED_HEADERS: [&str; 11] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
    "mime-version",
    "content-type",
];

/// Smallest RSA key brief signs with (RFC 8301 requires verifiers to accept 1024 to
/// 4096 bits; receivers increasingly treat 1024 as weak, and `ring` refuses it).
const MIN_RSA_BITS: usize = 2048;

/// Longest header line written (RFC 5322's recommended limit).
const MAX_LINE: usize = 78;

enum Key {
    Rsa(Box<RsaKeyPair>),
    Ed25519(Box<Ed25519KeyPair>),
}

/// One loaded signing key with the domain and selector it signs for.
struct KeySigner {
    key: Key,
    domain: String,
    selector: String,
}

/// The keys of `[dkim]`: each one adds its own `DKIM-Signature` (an RSA key next to an
/// Ed25519 one, for receivers that cannot verify Ed25519).
pub struct Signer {
    keys: Vec<KeySigner>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let mut list = f.debug_list();
        for k in &self.keys {
            list.entry(&(k.algorithm(), &k.domain, &k.selector));
        }
        list.finish()
    }
}

impl Signer {
    /// Loads `[dkim]`'s keys: `key_file`, then each `[[dkim.keys]]`; `resolve` turns a
    /// configured path into a real one. Every error names the file.
    pub fn load(dkim: &Dkim, resolve: impl Fn(&Path) -> PathBuf) -> Result<Signer> {
        let mut keys = Vec::new();
        let first = std::iter::once((&dkim.domain, &dkim.selector, &dkim.key_file, "[dkim]"));
        let more = dkim.keys.iter().map(|k| {
            let domain = k.domain.as_ref().unwrap_or(&dkim.domain);
            (domain, &k.selector, &k.key_file, "[[dkim.keys]]")
        });
        for (domain, selector, file, section) in first.chain(more) {
            let path = resolve(file);
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("{section} key_file: cannot read {}", path.display()))?;
            let signer = Signer::from_pem(&pem, domain, selector)
                .with_context(|| format!("{section} key_file {}", path.display()))?;
            keys.extend(signer.keys);
        }
        Ok(Signer { keys })
    }

    /// Parses a PEM private key: RSA (PKCS#1 or PKCS#8, 2048 bits or more) or Ed25519
    /// (PKCS#8).
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
            "-----BEGIN RSA PRIVATE KEY-----" => {
                let der = PrivatePkcs1KeyDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| anyhow!("not a valid PKCS#1 RSA private key: {e}"))?;
                let der = der.secret_pkcs1_der();
                refuse_small_rsa(der::rsa_modulus_bits(der))?;
                Key::Rsa(Box::new(RsaKeyPair::from_der(der).map_err(|e| {
                    anyhow!("not a usable PKCS#1 RSA private key: {e}")
                })?))
            }
            "-----BEGIN PRIVATE KEY-----" => {
                let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| anyhow!("not a valid PKCS#8 private key: {e}"))?;
                let der = der.secret_pkcs8_der();
                match der::pkcs8_algorithm(der) {
                    Some(der::Algorithm::Rsa(inner)) => {
                        refuse_small_rsa(der::rsa_modulus_bits(inner))?;
                        Key::Rsa(Box::new(RsaKeyPair::from_pkcs8(der).map_err(|e| {
                            anyhow!("not a usable PKCS#8 RSA private key: {e}")
                        })?))
                    }
                    // openssl writes version-1 PKCS#8 (no public key inside).
                    Some(der::Algorithm::Ed25519) => Key::Ed25519(Box::new(
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| {
                            anyhow!("not a usable PKCS#8 Ed25519 private key: {e}")
                        })?,
                    )),
                    Some(der::Algorithm::Other) => bail!(
                        "a PKCS#8 private key that is neither RSA nor Ed25519; DKIM signs with rsa-sha256 or ed25519-sha256"
                    ),
                    None => bail!("not a valid PKCS#8 private key"),
                }
            }
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
        Ok(Signer {
            keys: vec![KeySigner {
                key,
                domain: domain.to_string(),
                selector: selector.to_string(),
            }],
        })
    }

    /// The algorithm of each key, in signing order (`rsa-sha256`, `ed25519-sha256`).
    pub fn algorithms(&self) -> Vec<&'static str> {
        self.keys.iter().map(KeySigner::algorithm).collect()
    }

    /// Advice about a working key set: Ed25519 alone loses DKIM credit where receivers
    /// cannot verify it (SpamAssassin 4.0 among them).
    pub fn warning(&self) -> Option<String> {
        let rsa = self.keys.iter().any(|k| matches!(k.key, Key::Rsa(_)));
        (!rsa).then(|| {
            "only an Ed25519 DKIM key is configured: receivers that cannot verify Ed25519 (SpamAssassin 4.0, some mailbox providers) see the message as unsigned; add an RSA key as well ([[dkim.keys]] with its own selector)".to_string()
        })
    }

    /// The `DKIM-Signature:` header fields (one per key, folded, CRLF-terminated) for
    /// the message made of `slices` (CRLF line ends), signed at `timestamp` (Unix
    /// seconds).
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

        // The signed header data (RFC 6376 5.4.2): for each name in h=, its instances
        // from the bottom up, then one that does not exist (it adds nothing).
        let fields = header_fields(&head);
        let mut h = Vec::new();
        let mut signed = Vec::with_capacity(head.len());
        for name in SIGNED_HEADERS {
            for f in fields.iter().rev().filter(|f| field_name_is(f, name)) {
                h.push(name);
                canonicalize_header(f, &mut signed);
                signed.extend_from_slice(b"\r\n");
            }
            h.push(name);
        }
        let mut out = Vec::with_capacity(600 * self.keys.len());
        for k in &self.keys {
            out.extend(k.sign(&h, &signed, &bh, timestamp)?);
        }
        Ok(out)
    }
}

fn refuse_small_rsa(bits: Option<usize>) -> Result<()> {
    match bits {
        Some(bits) if bits < MIN_RSA_BITS => bail!(
            "the RSA key has {bits} bits; brief signs only with RSA keys of {MIN_RSA_BITS} bits or more (receivers treat shorter keys as weak): make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out KEY` and publish its public key under a new selector"
        ),
        Some(_) => Ok(()),
        None => bail!("not a valid RSA private key (no PKCS#1 RSAPrivateKey inside)"),
    }
}

impl KeySigner {
    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// One `DKIM-Signature` field over `signed` (the canonical signed headers).
    fn sign(&self, h: &[&str], signed: &[u8], bh: &str, timestamp: i64) -> Result<Vec<u8>> {
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
        for (i, name) in h.iter().enumerate() {
            let last = i + 1 == h.len();
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

        let mut data = Vec::with_capacity(signed.len() + field.out.len());
        data.extend_from_slice(signed);
        canonicalize_header(&field.out, &mut data);
        let signature = match &self.key {
            // RSASSA-PKCS1-v1_5 hashes `data` with SHA-256 itself.
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    &data,
                    &mut sig,
                )
                .map_err(|_| anyhow!("DKIM signing failed"))?;
                sig
            }
            // RFC 8463: Ed25519 signs the SHA-256 hash of the data.
            Key::Ed25519(k) => k.sign(&Sha256::digest(&data)).as_ref().to_vec(),
        };
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        field.fill(&b);
        field.out.extend_from_slice(b"\r\n");
        Ok(field.out)
    }
}

/// Just enough DER to size an RSA key and tell PKCS#8 key types apart, so a weak or
/// foreign key gets a message that says what it is.
mod der {
    /// One element: (tag, contents, the rest of the input).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &b| a << 8 | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

    /// The modulus size of a PKCS#1 `RSAPrivateKey`.
    pub(super) fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
        let (SEQUENCE, key, _) = element(pkcs1)? else {
            return None;
        };
        let (INTEGER, _version, rest) = element(key)? else {
            return None;
        };
        let (INTEGER, modulus, _) = element(rest)? else {
            return None;
        };
        let modulus = match modulus.iter().position(|&b| b != 0) {
            Some(i) => &modulus[i..],
            None => return Some(0),
        };
        Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
    }

    pub(super) enum Algorithm<'a> {
        /// With the PKCS#1 key inside.
        Rsa(&'a [u8]),
        Ed25519,
        Other,
    }

    /// The key type of a PKCS#8 `PrivateKeyInfo`.
    pub(super) fn pkcs8_algorithm(pkcs8: &[u8]) -> Option<Algorithm<'_>> {
        let (SEQUENCE, info, _) = element(pkcs8)? else {
            return None;
        };
        let (INTEGER, _version, rest) = element(info)? else {
            return None;
        };
        let (SEQUENCE, algorithm, rest) = element(rest)? else {
            return None;
        };
        let (OID, oid, _) = element(algorithm)? else {
            return None;
        };
        let (OCTET_STRING, key, _) = element(rest)? else {
            return None;
        };
        Some(match oid {
            RSA_ENCRYPTION => Algorithm::Rsa(key),
            ED25519 => Algorithm::Ed25519,
            _ => Algorithm::Other,
        })
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
        assert_eq!(ok.algorithms(), ["ed25519-sha256"]);
        assert!(ok.warning().is_some());
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
        // Each present header once per instance plus once (over-signed); absent ones once.
        assert!(unfolded.replace(' ', "").contains(
            "h=from:from:to:to:subject:subject:date:message-id:list-id:list-unsubscribe:list-unsubscribe-post:reply-to:mime-version:content-type;"
        ), "{unfolded}");
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
