//! Whole messages to a few people (the editors' reports), through the transport the
//! sends use: the same outbox writer (under `outbox/reports/`), the same SMTP client
//! with its TLS settings, the same DKIM signer. The caller decides what to say.

use super::{dkim, smtp, write_eml, Transport};
use crate::clock;
use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::Mailbox;
use std::io::Write;
use std::sync::Arc;

/// One plain-text message, sent To each of `to` separately.
pub struct Notice<'a> {
    pub to: &'a [Mailbox],
    pub subject: &'a str,
    pub body: &'a str,
    /// What it is about, for its Message-ID (e.g. `report.<slug>.<kind>`).
    pub tag: &'a str,
}

/// Sends notices from the newsletter's address.
pub struct Notifier<'a> {
    config: &'a Config,
    /// A send's transport and signer; `None`: loaded from the config when a notice
    /// goes out (most `brief dispatch` runs have nothing to report).
    given: Option<(Transport, Option<Arc<dkim::Signer>>)>,
}

impl<'a> Notifier<'a> {
    /// Through the transport and signer of a send.
    pub fn new(
        config: &'a Config,
        transport: Transport,
        dkim: Option<Arc<dkim::Signer>>,
    ) -> Notifier<'a> {
        Notifier {
            config,
            given: Some((transport, dkim)),
        }
    }

    /// Through the configured transport.
    pub fn from_config(config: &'a Config) -> Notifier<'a> {
        Notifier {
            config,
            given: None,
        }
    }

    pub fn send(&self, notice: &Notice<'_>) -> Result<()> {
        let config = self.config;
        let (transport, signer) = match &self.given {
            Some((transport, dkim)) => (transport.clone(), dkim.clone()),
            None => (
                Transport::from_config(config)?,
                // Signed like an edition when the key loads (a bad key stops sends).
                config.dkim.as_ref().and_then(|d| {
                    dkim::Signer::load(d, |p| config.resolve(p))
                        .map_err(|e| tracing::warn!("the report is not DKIM-signed: {e:#}"))
                        .ok()
                        .map(Arc::new)
                }),
            ),
        };
        let from = config.newsletter.from_mailbox();
        let now = clock::now();
        let stamp = now.format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let mut messages = Vec::new();
        for (i, to) in notice.to.iter().enumerate() {
            let message_id = format!("<{}.{stamp}.{i}@{}>", notice.tag, config.sender_domain());
            let message = lettre::Message::builder()
                .from(from.clone())
                .to(to.clone())
                .subject(notice.subject)
                .date(now.into())
                .message_id(Some(message_id.clone()))
                .header(MIME_VERSION_1_0)
                .header(ContentType::TEXT_PLAIN)
                // RFC 3834: a machine wrote it; responders and ticket systems leave it be.
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("Auto-Submitted"),
                    "auto-generated".to_string(),
                ))
                .body(notice.body.to_string())
                .context("cannot build the report")?;
            let mut bytes = message.formatted();
            if let Some(signer) = &signer {
                let mut signed = signer.sign([bytes.as_slice()], now.timestamp())?;
                signed.extend_from_slice(&bytes);
                bytes = signed;
            }
            messages.push((to.email.to_string(), message_id, bytes));
        }
        match transport {
            Transport::Outbox(_) => {
                let dir = config.outbox_dir().join("reports");
                crate::fsutil::create_private_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for (_, message_id, bytes) in &messages {
                    write_eml(&dir, message_id, |f| f.write_all(bytes))?;
                }
                Ok(())
            }
            Transport::Smtp(settings) => send_smtp(&settings, from.email.as_ref(), &messages),
            Transport::DryRun => Ok(()),
        }
    }
}

fn send_smtp(
    settings: &smtp::Settings,
    from: &str,
    messages: &[(String, String, Vec<u8>)],
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut conn = smtp::Connection::open(settings).await?;
        let mut refused = Vec::new();
        for (to, _, bytes) in messages {
            let bytes = dot_stuffed(bytes);
            match conn
                .send(
                    &smtp::MailFrom {
                        address: from,
                        envid: None,
                    },
                    to,
                    std::iter::once(bytes.as_slice()),
                    async { true },
                    None,
                )
                .await
            {
                smtp::Outcome::Accepted(_) => {}
                smtp::Outcome::Refused(r) => refused.push(format!("{to}: {r}")),
                smtp::Outcome::LostBeforeBody(why) => refused.push(format!(
                    "{to}: connection lost before the report was sent: {why}"
                )),
                smtp::Outcome::LostAfterBody(why) => refused.push(format!(
                    "{to}: no answer after the report was handed over (it may have arrived): {why}"
                )),
                smtp::Outcome::Aborted => refused.push(format!("{to}: not sent")),
            }
            if conn.broken {
                break;
            }
        }
        conn.quit().await;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("the relay did not take it: {}", refused.join("; ")))
        }
    })
}

/// SMTP's DATA ends at a line holding a lone dot: double every leading dot, and end
/// with CRLF.
fn dot_stuffed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut at_line_start = true;
    for &b in bytes {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(dot_stuffed(b".a\r\nb.\r\n..c"), b"..a\r\nb.\r\n...c\r\n");
    }
}
