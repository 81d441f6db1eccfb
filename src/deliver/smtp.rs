//! A small SMTP client that drives each transaction phase by phase, so the journal
//! knows whether a failure happened before the body was handed over (safe to retry)
//! or after (the message may have been delivered: in doubt).
//!
//! Why not lettre's transport: its `send()` reports the same error for both cases, and
//! its phase-aware connection dot-stuffs the body byte by byte; brief's prepared
//! message is already DATA-safe (see `message`), so it is written as is. lettre still
//! parses addresses and encodes headers.

use crate::config::{Config, Tls};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream,
};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How to reach the relay.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password: Option<String>,
    pub hello_name: String,
    /// Longest wait for any one reply (and for connecting).
    pub timeout: Duration,
    /// Longest wait for the reply to the final dot.
    pub data_timeout: Duration,
    /// AUTH may be sent without TLS (only ever true for a loopback relay).
    pub allow_plaintext_auth: bool,
    /// How the relay's certificate is verified: the roots of `smtp.ca_file`, or the
    /// system's (empty with `tls = "none"`).
    pub tls_config: Arc<rustls::ClientConfig>,
    /// `smtp.ca_file`, resolved (for messages).
    pub ca_file: Option<PathBuf>,
}

impl Settings {
    /// The relay settings from brief.toml, the password from the environment. A
    /// missing or invalid `smtp.ca_file` is an error here, before any connection.
    pub fn from_config(config: &Config) -> Result<Settings> {
        let ca_file = config.smtp.ca_file.as_ref().map(|p| config.resolve(p));
        let roots = match (&ca_file, config.smtp.tls) {
            (Some(path), _) => load_ca_file(path)?,
            (None, Tls::None) => rustls::RootCertStore::empty(),
            (None, _) => system_roots(),
        };
        let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        if let Some(problem) = plaintext_auth_problem(config) {
            bail!("{problem}");
        }
        Ok(Settings {
            host: config.smtp.host.clone(),
            port: config.smtp.port,
            tls: config.smtp.tls,
            username: config.smtp.username.clone(),
            password: config.smtp_password(),
            hello_name: config
                .smtp
                .hello_name
                .clone()
                .unwrap_or_else(default_hello_name),
            timeout: config.smtp.timeout,
            data_timeout: config.smtp.data_timeout,
            allow_plaintext_auth: config.smtp.allow_plaintext_auth,
            tls_config: Arc::new(tls_config),
            ca_file,
        })
    }
}

/// `smtp.allow_plaintext_auth` set for a relay that is not on a loopback address: the
/// password would cross a network in clear.
fn plaintext_auth_problem(config: &Config) -> Option<String> {
    let host = config
        .smtp
        .host
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (config.smtp.allow_plaintext_auth && !loopback).then(|| {
        format!(
            "smtp.allow_plaintext_auth is only accepted for a relay on this machine (127.0.0.1, ::1 or localhost), not for `{}`: use tls = \"starttls\" or \"tls\"",
            config.smtp.host
        )
    })
}

/// What `brief check` says about `[smtp]`: (key, is an error, message).
pub fn config_problems(config: &Config) -> Vec<(&'static str, bool, String)> {
    let mut out = Vec::new();
    if let Some(p) = plaintext_auth_problem(config) {
        out.push(("smtp.allow_plaintext_auth", true, p));
    } else if config.smtp.allow_plaintext_auth && config.smtp.tls == Tls::None {
        out.push((
            "smtp.allow_plaintext_auth",
            false,
            format!(
                "AUTH is sent without TLS to the relay on {} (smtp.allow_plaintext_auth): the password crosses only this machine",
                config.smtp.host
            ),
        ));
    }
    if !config.smtp.username.is_empty()
        && config.smtp.tls == Tls::None
        && !config.smtp.allow_plaintext_auth
    {
        out.push((
            "smtp.username",
            true,
            "smtp.username is set but smtp.tls is \"none\": brief never sends AUTH over an unencrypted connection (use tls = \"starttls\" or \"tls\", or for a relay on this machine set smtp.allow_plaintext_auth = true)".to_string(),
        ));
    }
    out
}

/// The envelope of one message. Per message, so the envelope sender may differ per
/// recipient (a VERP return path).
#[derive(Debug, Clone, Copy)]
pub struct MailFrom<'a> {
    /// The envelope sender (`[delivery] return_path`, default the From address).
    pub address: &'a str,
    /// The RFC 3461 envelope id, sent when the relay offers DSN: a DSN then names it.
    pub envid: Option<&'a str>,
}

/// The ENVID of an edition's messages: `brief.<namespace>.<slug>` as xtext, or none
/// when that would pass RFC 3461's 100 characters.
pub fn envid(namespace: &str, slug: &str) -> Option<String> {
    let id = xtext(&format!("brief.{namespace}.{slug}"));
    (id.len() <= 100).then_some(id)
}

/// RFC 3461 xtext: `+XX` for `+`, `=` and anything outside printable ASCII.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// An address for MAIL FROM or RCPT TO: the domain in A-labels; a non-ASCII local
/// part only with SMTPUTF8 (true when the parameter is needed).
fn envelope_address(address: &str, smtputf8: bool) -> Result<(String, bool)> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("`{address}` is not an address"))?;
    if !local.is_ascii() {
        if !smtputf8 {
            bail!("`{address}` has a non-ASCII local part and the relay does not offer SMTPUTF8");
        }
        return Ok((address.to_string(), true));
    }
    if domain.is_ascii() {
        return Ok((address.to_string(), false));
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| anyhow!("`{address}`: the domain is not a valid internationalized name"))?;
    Ok((format!("{local}@{ascii}"), false))
}

/// The CA certificates in a PEM file (`smtp.ca_file`): every `CERTIFICATE` block
/// becomes a trusted root; anything else in the file is ignored. No certificate, or
/// one that does not parse, is an error naming the file.
pub fn load_ca_file(path: &Path) -> Result<rustls::RootCertStore> {
    let shown = path.display();
    let pem = std::fs::read(path).with_context(|| format!("cannot read smtp.ca_file {shown}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| anyhow!("smtp.ca_file {shown} is not valid PEM: {e}"))?;
        roots.add(cert).map_err(|e| {
            let why = match e {
                rustls::Error::InvalidCertificate(problem) => format!("{problem:?}"),
                e => e.to_string(),
            };
            anyhow!(
                "smtp.ca_file {shown}: certificate {} is not a usable CA certificate ({why})",
                i + 1
            )
        })?;
    }
    if roots.is_empty() {
        bail!("smtp.ca_file {shown} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)");
    }
    Ok(roots)
}

/// The operating system's trusted CA certificates (unreadable ones are skipped: a
/// relay signed by none of them then fails the handshake with a clear message).
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// A server reply: code and text (lines joined with a space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// How one transaction ended.
#[derive(Debug)]
pub enum Outcome {
    /// The server accepted the message (reply to the final dot).
    Accepted(Reply),
    /// The server refused, before or after the body; nothing was delivered.
    Refused(Reply),
    /// The connection failed before the body was handed over: safe to retry.
    LostBeforeBody(String),
    /// The connection failed after the body was handed over: in doubt.
    LostAfterBody(String),
    /// The caller's pre-body step (the durable in-doubt mark) failed; nothing was sent.
    Aborted,
}

/// The envelope of the next message on a connection, known while the current body is
/// sent: with PIPELINING its MAIL, RCPT and DATA follow the final dot in the same write
/// (RFC 2920 3.1: message content may start a group), so one round trip per message
/// answers both the dot and the next envelope.
#[derive(Debug, Clone, Copy)]
pub struct Next<'a> {
    pub from: MailFrom<'a>,
    pub to: &'a str,
}

/// An envelope already on the wire for the next transaction.
struct Staged {
    from: String,
    to: String,
    /// None: the server answered DATA with 354 and waits for that recipient's body.
    refusal: Option<Reply>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open, greeted (and, as configured, encrypted and authenticated) connection.
pub struct Connection {
    stream: BufStream<Box<dyn Io>>,
    pipelining: bool,
    /// The relay offers DSN (RFC 3461) and SMTPUTF8 (RFC 6531).
    dsn: bool,
    smtputf8: bool,
    timeout: Duration,
    data_timeout: Duration,
    /// A transaction failed half-way: send RSET before the next one.
    needs_reset: bool,
    /// The next transaction's envelope, written behind the last body's final dot, and
    /// the server's answer to it.
    staged: Option<Staged>,
    /// The connection cannot be used again (closed, or out of step).
    pub broken: bool,
    /// Messages sent on this connection (a reused connection may have been closed by
    /// the server while idle).
    pub used: u64,
}

const LINE_MAX: usize = 4096;
/// The reply classes MAIL, RCPT and DATA must get.
const ENVELOPE_REPLIES: [u16; 3] = [250, 250, 354];

impl Connection {
    /// Connects, reads the greeting, says EHLO, starts TLS and authenticates as
    /// configured. Any failure here is a session failure.
    pub async fn open(s: &Settings) -> Result<Connection> {
        let addr = format!("{}:{}", s.host, s.port);
        let tcp = timeout(s.timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to the SMTP relay {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if s.tls == Tls::Tls {
            Box::new(tls_connect(tcp, s).await?)
        } else {
            Box::new(tcp)
        };
        let mut c = Connection {
            stream: BufStream::with_capacity(8192, 1 << 16, io),
            pipelining: false,
            dsn: false,
            smtputf8: false,
            timeout: s.timeout,
            data_timeout: s.data_timeout,
            needs_reset: false,
            staged: None,
            broken: false,
            used: 0,
        };
        let greeting = c.reply().await.context("no greeting from the relay")?;
        if greeting.code != 220 {
            bail!("the relay refused the session: {greeting}");
        }
        let mut ehlo = c.ehlo(&s.hello_name).await?;
        if s.tls == Tls::Starttls {
            if !has_ext(&ehlo, "STARTTLS") {
                bail!("the relay does not offer STARTTLS (set smtp.tls = \"none\" only for a relay on this machine)");
            }
            let r = c.command("STARTTLS").await?;
            if r.code != 220 {
                bail!("STARTTLS refused: {r}");
            }
            // Anything the relay sent after its 220 and before the handshake would be
            // read as if it came over TLS (the STARTTLS injection attack,
            // CVE-2011-0411): end the session instead.
            if c.unread_input().await {
                bail!("the relay sent data after its reply to STARTTLS and before the TLS handshake (a STARTTLS injection attack, or a broken relay): session ended");
            }
            let io = c.stream.into_inner();
            let tls = tls_connect(io, s).await?;
            c.stream = BufStream::with_capacity(8192, 1 << 16, Box::new(tls));
            ehlo = c.ehlo(&s.hello_name).await?;
        }
        c.pipelining = has_ext(&ehlo, "PIPELINING");
        c.dsn = has_ext(&ehlo, "DSN");
        c.smtputf8 = has_ext(&ehlo, "SMTPUTF8");
        if !s.username.is_empty() {
            if s.tls == Tls::None && !s.allow_plaintext_auth {
                bail!("smtp.username is set but the connection is not encrypted (smtp.tls = \"none\"): brief never sends AUTH in clear (use tls = \"starttls\" or \"tls\", or for a relay on this machine set smtp.allow_plaintext_auth = true)");
            }
            let password = s.password.as_deref().ok_or_else(|| {
                anyhow!("smtp.username is set but the password variable is empty")
            })?;
            c.auth(&ehlo, &s.username, password).await?;
        }
        Ok(c)
    }

    /// True when bytes the client has not asked for are already waiting.
    async fn unread_input(&mut self) -> bool {
        use std::task::Poll;
        let stream = &mut self.stream;
        std::future::poll_fn(|cx| {
            match std::pin::Pin::new(&mut *stream).poll_fill_buf(cx) {
                // Data, or the relay hung up: either way no handshake follows.
                Poll::Ready(_) => Poll::Ready(true),
                Poll::Pending => Poll::Ready(false),
            }
        })
        .await
    }

    async fn ehlo(&mut self, name: &str) -> Result<Vec<String>> {
        self.write_line(&format!("EHLO {name}")).await?;
        self.flush().await?;
        let (r, lines) = self.reply_lines().await?;
        if r.code != 250 {
            bail!("EHLO refused: {r}");
        }
        Ok(lines)
    }

    async fn auth(&mut self, ehlo: &[String], user: &str, password: &str) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mechanisms = ehlo
            .iter()
            .find_map(|l| {
                let up = l.to_ascii_uppercase();
                up.strip_prefix("AUTH").map(|m| m.replace('=', " "))
            })
            .unwrap_or_default();
        let has = |m: &str| mechanisms.split_whitespace().any(|x| x == m);
        let r = if has("PLAIN") || !has("LOGIN") {
            let token = b64.encode(format!("\0{user}\0{password}"));
            self.command(&format!("AUTH PLAIN {token}")).await?
        } else {
            let r = self.command("AUTH LOGIN").await?;
            if r.code != 334 {
                bail!("AUTH refused: {r}");
            }
            let r = self.command(&b64.encode(user)).await?;
            if r.code != 334 {
                bail!("AUTH refused: {r}");
            }
            self.command(&b64.encode(password)).await?
        };
        if r.code != 235 {
            bail!("authentication failed: {r}");
        }
        Ok(())
    }

    /// One message to one recipient. `before_body` runs after the server agreed to take
    /// the body (it makes the in-doubt mark durable); if it fails, the transaction is
    /// abandoned without sending anything. With `next` (and a relay that offers
    /// PIPELINING) the next message's envelope goes out right behind this body; the
    /// next `send` must then be for that envelope.
    pub async fn send<'a>(
        &mut self,
        from: &MailFrom<'_>,
        to: &str,
        body: impl Iterator<Item = &'a [u8]>,
        before_body: impl std::future::Future<Output = bool>,
        next: Option<Next<'_>>,
    ) -> Outcome {
        let outcome = self.transaction(from, to, body, before_body, next).await;
        match &outcome {
            Outcome::Refused(r) if r.code == 421 => self.broken = true,
            Outcome::Accepted(_) | Outcome::Refused(_) => {}
            _ => self.broken = true,
        }
        outcome
    }

    async fn transaction<'a>(
        &mut self,
        from: &MailFrom<'_>,
        to: &str,
        body: impl Iterator<Item = &'a [u8]>,
        before_body: impl std::future::Future<Output = bool>,
        next: Option<Next<'_>>,
    ) -> Outcome {
        let envelope = match self.staged.take() {
            Some(s) if s.from == from.address && s.to == to => Ok(s.refusal),
            // The server waits for another recipient's body: this connection can only
            // be dropped (never send one reader's copy on another's envelope).
            Some(s) => Err(anyhow!(
                "out of step: the envelope sent ahead was for {}, not {to}",
                s.to
            )),
            None => self.envelope(from, to).await,
        };
        match envelope {
            Err(e) => return Outcome::LostBeforeBody(format!("{e:#}")),
            Ok(Some(refusal)) => return Outcome::Refused(refusal),
            Ok(None) => {}
        }
        if !before_body.await {
            return Outcome::Aborted;
        }
        self.used += 1;
        let next = match next {
            Some(n) if self.pipelining => {
                self.envelope_commands(&n.from, n.to).ok().map(|c| (n, c))
            }
            _ => None,
        };
        let commands = next.as_ref().map(|(_, c)| &c[..]).unwrap_or(&[]);
        let reply = match self.body(body, commands).await {
            Ok(r) => r,
            Err(e) => return Outcome::LostAfterBody(format!("{e:#}")),
        };
        if let Some((n, _)) = next {
            // After a 421 the server is gone; otherwise it answers the envelope whatever
            // it said to the dot.
            if reply.code != 421 {
                match self.envelope_replies().await {
                    Ok(refusal) => {
                        self.staged = Some(Staged {
                            from: n.from.address.to_string(),
                            to: n.to.to_string(),
                            refusal,
                        })
                    }
                    // This message's answer stands; the next one starts afresh.
                    Err(_) => self.broken = true,
                }
            }
        }
        if reply.code / 100 == 2 {
            Outcome::Accepted(reply)
        } else {
            Outcome::Refused(reply)
        }
    }

    /// MAIL, RCPT, DATA (pipelined when the server allows). `Ok(None)` means the
    /// server is waiting for the body.
    async fn envelope(&mut self, from: &MailFrom<'_>, to: &str) -> Result<Option<Reply>> {
        if self.needs_reset {
            self.needs_reset = false;
            let r = self.command("RSET").await?;
            if r.code != 250 {
                return Ok(Some(r));
            }
        }
        let commands = self.envelope_commands(from, to)?;
        if self.pipelining {
            for c in &commands {
                self.write_line(c).await?;
            }
            self.flush().await?;
            self.envelope_replies().await
        } else {
            for (c, want) in commands.iter().zip(ENVELOPE_REPLIES) {
                let r = self.command(c).await?;
                if r.code / 100 != want / 100 {
                    self.needs_reset = true;
                    return Ok(Some(r));
                }
            }
            Ok(None)
        }
    }

    /// The MAIL, RCPT and DATA lines of one envelope.
    fn envelope_commands(&self, from: &MailFrom<'_>, to: &str) -> Result<[String; 3]> {
        let (sender, utf8) = envelope_address(from.address, self.smtputf8)?;
        let (rcpt, rcpt_utf8) = envelope_address(to, self.smtputf8)?;
        let mut mail = format!("MAIL FROM:<{sender}>");
        let mut rcpt_to = format!("RCPT TO:<{rcpt}>");
        if utf8 || rcpt_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.dsn {
            // Bounces come back with the headers only (small, and they carry the
            // keyed Message-ID), named by the edition; no success notices.
            mail.push_str(" RET=HDRS");
            if let Some(id) = from.envid {
                mail.push_str(&format!(" ENVID={id}"));
            }
            rcpt_to.push_str(" NOTIFY=FAILURE,DELAY");
            if !rcpt_utf8 {
                rcpt_to.push_str(&format!(" ORCPT=rfc822;{}", xtext(&rcpt)));
            }
        }
        Ok([mail, rcpt_to, "DATA".to_string()])
    }

    /// The replies to a pipelined MAIL, RCPT, DATA: `Ok(None)` when the server waits
    /// for the body, else the first refusal.
    async fn envelope_replies(&mut self) -> Result<Option<Reply>> {
        let mut first_refusal = None;
        for want in ENVELOPE_REPLIES {
            let r = match self.reply().await {
                Ok(r) => r,
                Err(e) => match first_refusal {
                    // e.g. 421 and a hang-up: the refusal is the answer.
                    Some(r) => {
                        self.broken = true;
                        return Ok(Some(r));
                    }
                    None => return Err(e),
                },
            };
            if first_refusal.is_none() && r.code / 100 != want / 100 {
                first_refusal = Some(r);
            } else if first_refusal.is_some() && r.code == 354 {
                // The server wants a body for a transaction we abandoned:
                // never send one; drop the connection instead.
                bail!("the relay accepted DATA after refusing the envelope");
            }
        }
        if first_refusal.is_some() {
            self.needs_reset = true;
        }
        Ok(first_refusal)
    }

    /// The body and its final dot, then `after` (the next envelope) in the same write;
    /// the reply to the dot.
    async fn body<'a>(
        &mut self,
        body: impl Iterator<Item = &'a [u8]>,
        after: &[String],
    ) -> Result<Reply> {
        for chunk in body {
            timeout(self.timeout, self.stream.write_all(chunk))
                .await
                .map_err(|_| anyhow!("timed out writing the message"))??;
        }
        timeout(self.timeout, self.stream.write_all(b".\r\n"))
            .await
            .map_err(|_| anyhow!("timed out writing the message"))??;
        for line in after {
            self.write_line(line).await?;
        }
        self.flush().await?;
        // RFC 5321 4.5.3.2.6: the server may take long to take responsibility.
        Ok(self.reply_lines_within(self.data_timeout).await?.0)
    }

    /// Says goodbye (best effort). A server waiting for a body gets none: the
    /// connection is closed, which abandons that transaction.
    pub async fn quit(mut self) {
        if !matches!(self.staged, Some(Staged { refusal: None, .. })) {
            let _ = self.command("QUIT").await;
        }
        let _ = self.stream.shutdown().await;
    }

    async fn command(&mut self, line: &str) -> Result<Reply> {
        self.write_line(line).await?;
        self.flush().await?;
        self.reply().await
    }

    async fn write_line(&mut self, line: &str) -> Result<()> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.write_all(b"\r\n").await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        timeout(self.timeout, self.stream.flush())
            .await
            .map_err(|_| anyhow!("timed out writing to the relay"))??;
        Ok(())
    }

    async fn reply(&mut self) -> Result<Reply> {
        Ok(self.reply_lines().await?.0)
    }

    /// Reads one (possibly multi-line) reply; also returns the text of each line.
    async fn reply_lines(&mut self) -> Result<(Reply, Vec<String>)> {
        self.reply_lines_within(self.timeout).await
    }

    async fn reply_lines_within(&mut self, wait: Duration) -> Result<(Reply, Vec<String>)> {
        let mut lines = Vec::new();
        let mut buf = Vec::with_capacity(128);
        loop {
            buf.clear();
            let n = timeout(
                wait,
                (&mut self.stream)
                    .take(LINE_MAX as u64)
                    .read_until(b'\n', &mut buf),
            )
            .await
            .map_err(|_| anyhow!("no reply from the relay within {wait:?}"))??;
            if n == 0 {
                bail!("the relay closed the connection");
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow!("malformed reply from the relay: {line:?}"))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok((
                    Reply {
                        code,
                        text: lines.join(" ").trim().to_string(),
                    },
                    lines,
                ));
            }
            if lines.len() > 100 {
                bail!("the relay's reply is too long");
            }
        }
    }
}

fn has_ext(ehlo: &[String], name: &str) -> bool {
    ehlo.iter().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(name))
    })
}

async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    s: &Settings,
) -> Result<tokio_rustls::client::TlsStream<S>> {
    let host = &s.host;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("`{host}` is not a valid TLS server name"))?;
    let handshake = tokio_rustls::TlsConnector::from(s.tls_config.clone()).connect(name, io);
    timeout(s.timeout, handshake)
        .await
        .map_err(|_| anyhow!("TLS handshake with {host} timed out"))?
        .map_err(|e| {
            let why = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(problem)) => {
                    certificate_problem(problem, s.ca_file.as_deref())
                }
                _ => e.to_string(),
            };
            anyhow!("TLS handshake with {host} failed: {why}")
        })
}

/// Why the relay's certificate was refused, with what to do about the usual cause.
fn certificate_problem(problem: &rustls::CertificateError, ca_file: Option<&Path>) -> String {
    match (problem, ca_file) {
        (rustls::CertificateError::UnknownIssuer, Some(path)) => format!(
            "the relay's certificate is not signed by a CA in smtp.ca_file {} (unknown issuer)",
            path.display()
        ),
        (rustls::CertificateError::UnknownIssuer, None) => "the relay's certificate is not signed by a CA this system trusts (unknown issuer); for a relay with its own CA, set smtp.ca_file".to_string(),
        (problem, _) => format!("the relay's certificate was refused: {problem}"),
    }
}

/// The name to send in EHLO when the config gives none: the machine's host name, or
/// the address literal RFC 5321 4.1.4 asks for when there is no usable name.
pub fn default_hello_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "[127.0.0.1]".to_string())
}
