//! `brief serve`'s `/c/<token>`: a recorded token redirects (302, no page) to its URL
//! and, while the edition's reporting window is open and `[tracking]` is on, the click
//! is counted. A token the store does not know is a 404: only URLs that were in an
//! edition redirect, so a link cannot be forged into an open redirect.

use super::{filter, looks_like_token, report};
use crate::clock;
use crate::config::{Config, Tracking};
use crate::serve::http::{self, Body};
use crate::store::Store;
use anyhow::{Context, Result};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Controls and spaces (the store never holds them: editions refuse them) and every
/// non-ASCII byte.
const NOT_IN_A_HEADER: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');

/// How often a running server closes the windows that have ended.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The click side of the store, with its own connection (the suppression writer and
/// this one write in turn).
pub struct Recorder {
    store: Mutex<Store>,
    tracking: Tracking,
}

/// What a click request asked for.
pub struct ClickRequest<'a> {
    pub token: &'a str,
    pub head: bool,
    pub headers: &'a HeaderMap,
    /// The client's address (behind the proxy: the one it forwarded).
    pub client: IpAddr,
}

impl Recorder {
    /// Opens the store, closes the windows that have ended, and keeps closing them
    /// every few minutes while the server runs.
    pub fn start(config: &Config) -> Result<Arc<Recorder>> {
        let store = Store::for_config(config)?;
        report::close_expired(&store, &config.tracking, clock::now())?;
        let recorder = Arc::new(Recorder {
            store: Mutex::new(store),
            tracking: config.tracking.clone(),
        });
        let weak = Arc::downgrade(&recorder);
        std::thread::Builder::new()
            .name("brief-click-windows".into())
            .spawn(move || sweep(&weak))
            .context("cannot start the click window thread")?;
        Ok(recorder)
    }

    /// The destination of `req`'s token (counting the click when it counts), or none
    /// for a token the store does not know. Blocking: call it off the async threads.
    pub fn follow(&self, req: &ClickRequest<'_>) -> Result<Option<String>> {
        if !looks_like_token(req.token) {
            return Ok(None);
        }
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let Some((edition, url)) = store.tracked_link(req.token)? else {
            return Ok(None);
        };
        if self.tracking.enabled {
            // A click that cannot be counted still takes the reader where they meant to go.
            if let Err(e) = self.count(&store, &edition, req) {
                tracing::warn!("cannot count a click on {edition}: {e:#}");
            }
        }
        Ok(Some(url))
    }

    fn count(&self, store: &Store, edition: &str, req: &ClickRequest<'_>) -> Result<()> {
        let now = clock::now();
        let window =
            chrono::Duration::from_std(self.tracking.window).unwrap_or(chrono::Duration::MAX);
        // Counted only in the window of a real send (not a test send's clicks).
        let open = store
            .click_window(edition)?
            .is_some_and(|w| !w.closed && w.started_at <= now && now - w.started_at < window);
        if !open {
            return Ok(());
        }
        let Some(key) = store.click_key(edition)? else {
            return Ok(());
        };
        let agent = req
            .headers
            .get(header::USER_AGENT)
            .map_or(&[][..], HeaderValue::as_bytes);
        let reason = filter::request_reason(req.head, req.headers, &self.tracking.scanner_agents);
        store.record_click(
            req.token,
            edition,
            now,
            reason,
            &client_label(&key, req.client, agent),
        )
    }
}

/// The client's label within one edition: a keyed hash of its address and user agent.
/// The key is random, per edition, and dropped with the labels when the window closes.
fn client_label(key: &[u8], ip: IpAddr, agent: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(ip.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(agent);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

fn sweep(recorder: &Weak<Recorder>) {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let Some(r) = recorder.upgrade() else {
            return;
        };
        let store = r.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = report::close_expired(&store, &r.tracking, clock::now()) {
            tracing::warn!("cannot close ended click windows: {e:#}");
        }
    }
}

/// The redirect: no page, not cached (every click must reach brief), no referrer.
/// Characters a header cannot hold (a URL written with `é`) are percent-encoded, as a
/// browser does before following it.
pub fn redirect(url: &str) -> Option<Response<Body>> {
    let encoded = percent_encoding::utf8_percent_encode(url, NOT_IN_A_HEADER).to_string();
    let location = HeaderValue::from_str(&encoded).ok()?;
    let mut res = http::response(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    let h = res.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_depend_on_the_key() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = client_label(b"k1", ip, b"UA");
        assert_eq!(a, client_label(b"k1", ip, b"UA"));
        assert_ne!(a, client_label(b"k2", ip, b"UA"));
        assert_ne!(a, client_label(b"k1", ip, b"UB"));
    }

    #[test]
    fn redirect_headers() {
        let res = redirect("https://acme.example/?a=1").unwrap();
        assert_eq!(res.status(), StatusCode::FOUND);
        assert_eq!(res.headers()[header::LOCATION], "https://acme.example/?a=1");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let res = redirect("https://café.example/menü?q=ü").unwrap();
        assert_eq!(
            res.headers()[header::LOCATION],
            "https://caf%C3%A9.example/men%C3%BC?q=%C3%BC"
        );
    }
}
