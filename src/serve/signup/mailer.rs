//! Signup mails (confirmations, welcomes) go out from one thread, after the request
//! that caused them is answered: the answer takes as long whether or not a mail is
//! sent (no enumeration by timing), and a relay that is down delays mail, not pages.
//!
//! Each mail is recorded in the store (`pending`) in the same transaction as the
//! signup, claimed before it is sent (so two `brief serve` on one store never both
//! send it), and retried with a growing back-off when the relay does not take it.
//! They go through [`Notifier`]: the newsletter's transport and DKIM key.

use crate::clock;
use crate::config::Config;
use crate::deliver::notify::{Notice, Notifier};
use crate::store::Store;
use anyhow::{Context, Result};
use lettre::message::Mailbox;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Tries before a mail is given up.
const MAX_ATTEMPTS: u32 = 6;
/// How often failed mails are looked at again without a wake-up.
const POLL: Duration = Duration::from_secs(30);

/// Wakes the mailer when a mail was queued.
#[derive(Clone)]
pub(crate) struct Wake(mpsc::Sender<()>);

impl Wake {
    pub(crate) fn now(&self) {
        let _ = self.0.send(());
    }
}

pub(crate) struct Mailer {
    thread: JoinHandle<()>,
}

impl Mailer {
    /// Starts the thread; it stops once every [`Wake`] is dropped, after one last look.
    pub(crate) fn start(config: Config) -> Result<(Mailer, Wake)> {
        let store = Store::for_config(&config)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("brief-signup-mailer".into())
            .spawn(move || run(&config, &store, &rx))
            .context("cannot start the signup mailer thread")?;
        Ok((Mailer { thread }, Wake(tx)))
    }

    /// Waits (bounded) for the thread to finish.
    pub(crate) fn finish(self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

/// Sends what is due at start (mails a stopped server left), on each wake-up, every
/// [`POLL`], and once more when the server stops.
fn run(config: &Config, store: &Store, rx: &mpsc::Receiver<()>) {
    loop {
        if let Err(err) = send_due(config, store) {
            tracing::error!("signup mails: {err:#}");
        }
        if let Err(mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(POLL) {
            if let Err(err) = send_due(config, store) {
                tracing::error!("signup mails: {err:#}");
            }
            return;
        }
    }
}

fn send_due(config: &Config, store: &Store) -> Result<()> {
    let notifier = Notifier::from_config(config);
    for mail in store.due_signup_mails(clock::now(), MAX_ATTEMPTS)? {
        if !store.claim_signup_mail(&mail, clock::now())? {
            continue;
        }
        let sent = mail
            .address
            .parse::<lettre::Address>()
            .map_err(anyhow::Error::new)
            .and_then(|address| {
                notifier.send(&Notice {
                    to: &[Mailbox::new(None, address)],
                    subject: &mail.subject,
                    body: &mail.body,
                    tag: &mail.tag,
                })
            });
        match sent {
            Ok(()) => store.signup_mail_done(&mail.tag, "sent", None, clock::now())?,
            Err(err) => {
                let why = format!("{err:#}");
                tracing::warn!(
                    "{} mail to {} not sent (try {}): {why}",
                    mail.kind,
                    crate::serve::pages::mask(&mail.address),
                    mail.attempts + 1
                );
                store.signup_mail_done(&mail.tag, "failed", Some(&why), clock::now())?;
            }
        }
    }
    Ok(())
}
