//! Readers sign up themselves: `GET/POST …/subscribe` (the form), `POST
//! …/api/subscribe` (JSON, for a newsroom's own site; CORS for configured origins),
//! `GET …/api/challenge` (a proof-of-work challenge for that site), `…/s/<token>` (the
//! confirmation link: GET asks, POST confirms) and `…/p/<token>` (the preference
//! centre, [`preferences`]).
//!
//! No enumeration: every signup that passes the form's own checks gets the same
//! answer, whatever the store knows about the address, and the answer never waits for
//! a mail (the [`mailer`] sends after). Abuse: a per-client rate limit, a honeypot
//! field, bounded unconfirmed signups per address and per client, and an optional
//! proof of work. An address suppressed by the editors, by bounces or by a complaint
//! gets no mail at all; one the reader unsubscribed gets a confirmation link, and only
//! opening it lifts the suppression.

mod mailer;
mod mails;
mod pages;
mod preferences;
mod tokens;

use super::http::{self, client_group, Body};
use super::limits::{client_ip, RateLimiter};
use super::{header_str, page_response, protect, read_body, App};
use crate::audience::normalize_address;
use crate::clock;
use crate::config::Config;
use crate::store::{Addition, Consent, Store, SuppressionSource};
use crate::token::Keyring;
use anyhow::Result;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
pub(super) use mailer::Mailer;
pub(crate) use mails::TEMPLATE_FILES;
use mails::{Mails, Named};
use pages::{Choice, Filled, Work};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokens::{Ask, Opened, Tokens, CHALLENGE_VALID};

/// Without script the proof of work is a wait: a challenge answered without work is
/// accepted this many seconds after the form was served (people take longer to fill it
/// in; a bot has to wait too, one challenge at a time, within the rate limit).
const FALLBACK_WAIT: i64 = 8;
/// Longest name kept (characters).
const MAX_NAME: usize = 100;

/// A signup template that does not parse, for `brief check` (file:line:col).
pub(crate) fn template_problems(config: &Config) -> Vec<crate::diag::Diagnostic> {
    match Mails::load(config) {
        Ok(_) => Vec::new(),
        Err(e) => vec![match e.downcast::<crate::diag::Diagnostic>() {
            Ok(d) => d,
            Err(e) => {
                crate::diag::Diagnostic::error(config.templates_dir(), 1, 1, format!("{e:#}"))
            }
        }],
    }
}

/// The paths this module answers, relative to the base path.
pub(super) enum Area<'a> {
    Form,
    Api,
    Challenge,
    Confirm(&'a str),
    Preferences(&'a str),
}

pub(super) fn area(rel: &str) -> Option<Area<'_>> {
    match rel {
        "/subscribe" | "/subscribe/" => Some(Area::Form),
        "/api/subscribe" => Some(Area::Api),
        "/api/challenge" => Some(Area::Challenge),
        _ => rel
            .strip_prefix("/s/")
            .map(Area::Confirm)
            .or_else(|| rel.strip_prefix("/p/").map(Area::Preferences)),
    }
}

/// Everything signup requests share.
pub(super) struct Signup {
    config: Config,
    tokens: Tokens,
    /// Issues preference-centre links (the newsletter's own unsubscribe keys).
    keyring: Keyring,
    mails: Mails,
    store: Arc<Mutex<Store>>,
    wake: mailer::Wake,
    limiter: RateLimiter,
    base_url: String,
}

impl Signup {
    pub(super) fn start(config: &Config, keyring: &Keyring) -> Result<(Arc<Signup>, Mailer)> {
        let (mailer, wake) = Mailer::start(config.clone())?;
        let signup = Signup {
            config: config.clone(),
            tokens: Tokens::new(config)?,
            keyring: keyring.clone(),
            mails: Mails::load(config)?,
            store: Arc::new(Mutex::new(Store::for_config(config)?)),
            wake,
            limiter: RateLimiter::new(config.signup.client_rate, config.signup.client_burst)
                .expect("config checks that the signup rate is above 0"),
            base_url: config.newsletter.base_url.trim_end_matches('/').to_string(),
        };
        Ok((Arc::new(signup), mailer))
    }

    /// The public managed lists, in name order.
    fn public_lists(&self) -> impl Iterator<Item = (&String, &crate::config::ManagedList)> {
        self.config.lists.iter().filter(|(_, l)| l.public)
    }

    fn consent_text(&self) -> String {
        self.config
            .signup
            .consent_text(&self.config.newsletter.name)
    }

    fn preferences_url(&self, email: &str) -> String {
        format!(
            "{}/p/{}",
            self.base_url,
            self.keyring.issue(email, "signup", false)
        )
    }

    fn named(&self, lists: &[String]) -> Vec<Named<'_>> {
        lists
            .iter()
            .filter_map(|l| self.config.managed_list(l))
            .map(|l| Named {
                title: &l.title,
                description: &l.description,
            })
            .collect()
    }

    /// Runs `f` on the store in a blocking thread, outside a transaction (reads).
    async fn read_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Signup, &Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = me.store.lock().unwrap_or_else(|e| e.into_inner());
            f(&me, &store)
        })
        .await
        .map_err(|e| anyhow::anyhow!("the store task failed: {e}"))?
    }

    /// Runs `f` on the store in a blocking thread, in one transaction.
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Signup, &Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = me.store.lock().unwrap_or_else(|e| e.into_inner());
            store.transaction(|store| f(&me, store))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the store task failed: {e}"))?
    }
}

pub(super) async fn route(
    app: &App,
    peer: SocketAddr,
    area: Area<'_>,
    req: Request<Incoming>,
) -> Response<Body> {
    match area {
        Area::Form => form_route(app, peer, req).await,
        Area::Api => api_route(app, peer, req).await,
        Area::Challenge => challenge_route(app, &req),
        Area::Confirm(token) => confirm_route(app, token, req).await,
        Area::Preferences(token) => preferences::route(app, token, req).await,
    }
}

/// What a signup asks for, checked.
struct Input {
    email: String,
    name: String,
    lists: Vec<String>,
    honeypot: bool,
    challenge: String,
    work: String,
}

/// The raw fields of a signup, from a form or a JSON body.
#[derive(Default)]
struct Raw {
    email: String,
    name: String,
    lists: Vec<String>,
    website: String,
    challenge: String,
    work: String,
}

impl Raw {
    fn from_form(fields: Vec<(String, String)>) -> Raw {
        let mut raw = Raw::default();
        for (name, value) in fields {
            match name.as_str() {
                "email" => raw.email = value,
                "name" => raw.name = value,
                "list" => raw.lists.push(value),
                "website" => raw.website = value,
                "challenge" => raw.challenge = value,
                "work" => raw.work = value,
                _ => {}
            }
        }
        raw
    }

    fn from_json(body: &[u8]) -> Option<Raw> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let text = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let lists = match v.get("lists") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Some(Raw {
            email: text("email"),
            name: text("name"),
            lists,
            website: text("website"),
            challenge: text("challenge"),
            work: text("work"),
        })
    }
}

/// Checks a signup's fields; the error is for the reader (it says nothing about
/// whether the address is known).
fn check(public: &[&String], raw: Raw) -> Result<Input, &'static str> {
    if raw.email.len() > 254 {
        return Err("That email address is too long.");
    }
    let email = normalize_address(&raw.email)
        .ok()
        // A quoted local part is valid, but no confirmation mail can be built for it.
        .filter(|e| !e.starts_with('"'))
        .ok_or("Please enter a valid email address, like name@example.org.")?;
    let name = raw.name.trim().to_string();
    if name.chars().count() > MAX_NAME {
        return Err("That name is too long (100 characters at most).");
    }
    if name.chars().any(unsafe_in_name) {
        return Err("That name contains characters we cannot use.");
    }
    let mut lists: Vec<String> = Vec::new();
    for l in raw.lists {
        if !public.contains(&&l) {
            return Err("Please choose from the newsletters listed.");
        }
        if !lists.contains(&l) {
            lists.push(l);
        }
    }
    if lists.is_empty() {
        match public {
            [only] => lists.push((*only).clone()),
            _ => return Err("Please choose at least one newsletter."),
        }
    }
    Ok(Input {
        email,
        name,
        lists,
        honeypot: !raw.website.trim().is_empty(),
        challenge: raw.challenge,
        work: raw.work,
    })
}

/// Control characters break headers; bidi controls and zero-width characters disguise
/// a name; private-use characters are brief's personalization markers.
fn unsafe_in_name(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
        || matches!(c, '\u{E000}'..='\u{F8FF}')
}

/// Whether `email` is suppressed (by address, or erased and known by its hash) by
/// someone other than the reader: the editors, a bounce, a complaint.
fn kept_off(store: &Store, email: &str) -> Result<bool> {
    Ok([
        store.suppression(email)?,
        store.suppression(&crate::store::erased_key(email))?,
    ]
    .iter()
    .flatten()
    .any(|x| !reader_made(x.source)))
}

/// Suppressions a confirmation link may lift: the reader's own.
fn reader_made(source: SuppressionSource) -> bool {
    matches!(
        source,
        SuppressionSource::OneClick | SuppressionSource::Page | SuppressionSource::Mailto
    )
}

/// Whether the proof of work (if asked for) is there: enough leading zero bits, or
/// (no script) a wait since the challenge was made. The challenge is spent in
/// [`accept`].
fn work_ok(s: &Signup, input: &Input, now: i64) -> bool {
    let bits = s.config.signup.proof_of_work;
    if bits == 0 {
        return true;
    }
    let Some(made) = s.tokens.challenge_made(&input.challenge) else {
        return false;
    };
    let age = now - made;
    if !(-60..CHALLENGE_VALID.as_secs() as i64).contains(&age) {
        return false;
    }
    if input.work.is_empty() {
        age >= FALLBACK_WAIT
    } else {
        input.work.len() <= 32
            && tokens::leading_zero_bits(&input.challenge, &input.work) >= u32::from(bits)
    }
}

enum Accepted {
    /// The one answer (whether or not a mail goes out).
    Yes,
    /// The proof of work's challenge was used before.
    Spent,
}

/// Records the signup and queues its confirmation mail, unless the address may not be
/// mailed or has enough unconfirmed signups already.
fn accept(s: &Signup, store: &Store, input: &Input, client: &str, form: &str) -> Result<Accepted> {
    let now = clock::now();
    store.count_signup(now)?;
    if s.config.signup.proof_of_work > 0 {
        let expires = now + chrono::Duration::from_std(CHALLENGE_VALID)?;
        if !store.spend_challenge(&input.challenge, expires, now)? {
            return Ok(Accepted::Spent);
        }
    }
    if input.honeypot {
        return Ok(Accepted::Yes);
    }
    let limits = &s.config.signup;
    let (per_address, per_client) = store.pending_counts(&input.email, client, now)?;
    if kept_off(store, &input.email)?
        || per_address >= u64::from(limits.max_pending_per_address)
        || per_client >= u64::from(limits.max_pending_per_client)
    {
        return Ok(Accepted::Yes);
    }
    let nonce = tokens::nonce();
    let ask = Ask {
        email: input.email.clone(),
        name: input.name.clone(),
        lists: input.lists.clone(),
        issued: now.timestamp(),
        form: form.to_string(),
        nonce: nonce.clone(),
    };
    let url = format!("{}/s/{}", s.base_url, s.tokens.confirm(&ask));
    let (subject, body) = s.mails.confirm(
        &input.email,
        &input.name,
        &s.named(&input.lists),
        &url,
        &mails::for_people(limits.confirm_within),
    )?;
    let expires = now + chrono::Duration::from_std(limits.confirm_within)?;
    store.add_pending(&nonce, &input.email, client, &input.lists, now, expires)?;
    store.queue_signup_mail(
        &format!("signup.confirm.{nonce}"),
        &input.email,
        "confirm",
        &subject,
        &body,
        now,
    )?;
    Ok(Accepted::Yes)
}

/// The client a signup is charged to (IPv6 by /64).
fn client_key(peer: SocketAddr, req: &Request<Incoming>) -> (std::net::IpAddr, String) {
    let ip = client_ip(peer, req.headers());
    (ip, client_group(ip).to_string())
}

fn form_page(
    s: &Signup,
    status: StatusCode,
    error: Option<&str>,
    filled: &Filled<'_>,
    chosen: &[String],
) -> Response<Body> {
    let lists: Vec<Choice<'_>> = s
        .public_lists()
        .map(|(name, l)| Choice {
            name,
            title: &l.title,
            description: &l.description,
            checked: chosen.contains(name),
        })
        .collect();
    let bits = s.config.signup.proof_of_work;
    let challenge = (bits > 0).then(|| s.tokens.challenge(clock::now()));
    let work = challenge
        .as_deref()
        .map(|challenge| Work { challenge, bits });
    let html = pages::form(
        &s_site(s),
        &lists,
        &s.consent_text(),
        error,
        filled,
        work.as_ref(),
    );
    let mut res = http::response(status, "text/html; charset=utf-8", html);
    protect(res.headers_mut(), pages::form_content_security_policy());
    res
}

fn s_site(s: &Signup) -> super::pages::Site {
    super::pages::Site {
        name: s.config.newsletter.name.clone(),
        contact: s.config.newsletter.contact_mailbox().email.to_string(),
        language: s.config.newsletter.language.clone(),
    }
}

fn no_signup(app: &App) -> Response<Body> {
    page_response(
        StatusCode::NOT_FOUND,
        super::pages::status(&app.site, "Not found", "There is no page at this address."),
    )
}

fn too_many(app: &App, json: bool) -> Response<Body> {
    let mut res = if json {
        json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "too many requests; try again later"}),
        )
    } else {
        page_response(
            StatusCode::TOO_MANY_REQUESTS,
            super::pages::status(
                &app.site,
                "Too many requests",
                "Please wait a minute and try again.",
            ),
        )
    };
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    res
}

async fn form_route(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let s = &app.signup;
    if s.public_lists().next().is_none() {
        return no_signup(app);
    }
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return form_page(s, StatusCode::OK, None, &Filled::default(), &[]);
    }
    if method != Method::POST {
        return super::method_not_allowed(app, "GET, HEAD, POST");
    }
    let (ip, client) = client_key(peer, &req);
    if !s.limiter.allow(ip) {
        return too_many(app, false);
    }
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(res) => return res(app),
    };
    let raw = Raw::from_form(super::form::fields(content_type.as_deref(), &body));
    let (email, name, chosen) = (raw.email.clone(), raw.name.clone(), raw.lists.clone());
    let filled = Filled {
        email: &email,
        name: &name,
    };
    let public: Vec<&String> = s.public_lists().map(|(n, _)| n).collect();
    let input = match check(&public, raw) {
        Ok(input) => input,
        Err(why) => return form_page(s, StatusCode::BAD_REQUEST, Some(why), &filled, &chosen),
    };
    if !work_ok(s, &input, clock::now().timestamp()) {
        return form_page(
            s,
            StatusCode::BAD_REQUEST,
            Some(TRY_AGAIN),
            &filled,
            &chosen,
        );
    }
    let accepted = s
        .with_store(move |s, store| accept(s, store, &input, &client, "signup form"))
        .await;
    match accepted {
        Ok(Accepted::Yes) => {
            s.wake.now();
            page_response(StatusCode::OK, pages::check_inbox(&app.site))
        }
        Ok(Accepted::Spent) => form_page(
            s,
            StatusCode::BAD_REQUEST,
            Some(TRY_AGAIN),
            &filled,
            &chosen,
        ),
        Err(err) => super::store_failed(app, &err),
    }
}

const TRY_AGAIN: &str =
    "Please press Subscribe again (the form was waiting too long, or sent twice).";

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = http::response(status, "application/json", value.to_string());
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// CORS for a configured origin: that site's script may read the answer.
fn allow_origin(s: &Signup, origin: Option<&str>, res: &mut Response<Body>) {
    let h = res.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else { return };
    if s.config.signup.cors_origins.iter().any(|o| o == origin) {
        if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
    }
}

async fn api_route(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let s = app.signup.clone();
    let origin = header_str(&req, header::ORIGIN);
    let mut res = if s.public_lists().next().is_none() {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "no public list to sign up to"}),
        )
    } else {
        api_answer(app, &s, peer, req).await
    };
    allow_origin(&s, origin.as_deref(), &mut res);
    res
}

async fn api_answer(
    app: &App,
    s: &Arc<Signup>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        let mut res = http::response(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return res;
    }
    if req.method() != Method::POST {
        let mut res = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "POST only"}),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return res;
    }
    let (ip, client) = client_key(peer, &req);
    if !s.limiter.allow(ip) {
        return too_many(app, true);
    }
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(page) => {
            return json_response(
                page(app).status(),
                &json!({"error": "the request body is too large or unreadable"}),
            )
        }
    };
    let is_json = content_type.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    let raw = if is_json {
        match Raw::from_json(&body) {
            Some(raw) => raw,
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "the body is not a JSON object"}),
                )
            }
        }
    } else {
        Raw::from_form(super::form::fields(content_type.as_deref(), &body))
    };
    let public: Vec<&String> = s.public_lists().map(|(n, _)| n).collect();
    let input = match check(&public, raw) {
        Ok(input) => input,
        Err(why) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": why})),
    };
    let work_error = json!({"error": "a proof of work is needed: GET api/challenge, then send `challenge` and `work`"});
    if !work_ok(s, &input, clock::now().timestamp()) {
        return json_response(StatusCode::BAD_REQUEST, &work_error);
    }
    match s
        .with_store(move |s, store| accept(s, store, &input, &client, "api"))
        .await
    {
        Ok(Accepted::Yes) => {
            s.wake.now();
            json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "accepted", "message": "If the address can receive this newsletter, a confirmation link is on its way."}),
            )
        }
        Ok(Accepted::Spent) => json_response(StatusCode::BAD_REQUEST, &work_error),
        Err(err) => {
            tracing::error!("cannot record a signup: {err:#}");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "try again in a minute"}),
            )
        }
    }
}

fn challenge_route(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let s = &app.signup;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return super::method_not_allowed(app, "GET, HEAD");
    }
    let bits = s.config.signup.proof_of_work;
    let challenge = (bits > 0).then(|| s.tokens.challenge(clock::now()));
    let mut res = json_response(
        StatusCode::OK,
        &json!({"challenge": challenge, "bits": bits, "wait_seconds": FALLBACK_WAIT}),
    );
    allow_origin(s, header_str(req, header::ORIGIN).as_deref(), &mut res);
    res
}

/// What a confirmation did.
enum Confirmed {
    Done,
    /// Suppressed by the editors or after bounces: a link does not undo that.
    Kept,
    /// Confirmed before, and the reader has changed things since (left, unsubscribed,
    /// deleted their data): an old link does not undo what they did.
    Used,
}

/// Adds the reader to the lists they asked for, with the consent record; lifts their
/// own suppression; queues the welcome mail once per signup.
/// The answer to a confirmation link whose signup was confirmed already: as the first
/// click's while the reader still gets those lists, "used" once they changed things.
/// Changes nothing.
fn used_link(s: &Signup, store: &Store, ask: &Ask) -> Result<Confirmed> {
    let on_lists = store.reader(&ask.email)?.is_some_and(|r| {
        ask.lists
            .iter()
            .filter(|l| s.config.managed_list(l).is_some())
            .all(|l| r.lists.contains(l))
    });
    Ok(if on_lists && !store.is_suppressed(&ask.email)? {
        Confirmed::Done
    } else {
        Confirmed::Used
    })
}

fn confirm(s: &Signup, store: &Store, ask: &Ask) -> Result<Confirmed> {
    let now = clock::now();
    if kept_off(store, &ask.email)? {
        return Ok(Confirmed::Kept);
    }
    if !store.take_pending(&ask.nonce)? {
        return used_link(s, store, ask);
    }
    if store.is_suppressed(&ask.email)? {
        store.resubscribe(&ask.email)?;
    }
    store.forget_erasure(&ask.email)?;
    let lists: Vec<String> = ask
        .lists
        .iter()
        .filter(|l| s.config.managed_list(l).is_some())
        .cloned()
        .collect();
    let before = store
        .reader(&ask.email)?
        .map(|r| r.lists)
        .unwrap_or_default();
    store.add_reader(&Addition {
        address: &ask.email,
        name: (!ask.name.is_empty()).then_some(ask.name.as_str()),
        fields: None,
        lists: &lists,
        consent: Consent {
            at: now,
            form: ask.form.clone(),
            lists: lists.clone(),
            text: s.consent_text(),
        },
    })?;
    let added = lists.iter().any(|l| !before.contains(l));
    if s.config.signup.welcome && added {
        let reader = store.reader(&ask.email)?;
        let name = reader.as_ref().map_or("", |r| r.name.as_str());
        let (subject, body) = s.mails.welcome(
            &ask.email,
            name,
            &s.named(&lists),
            &s.preferences_url(&ask.email),
        )?;
        store.queue_signup_mail(
            &format!("signup.welcome.{}", ask.nonce),
            &ask.email,
            "welcome",
            &subject,
            &body,
            now,
        )?;
    }
    Ok(Confirmed::Done)
}

async fn confirm_route(app: &App, token: &str, req: Request<Incoming>) -> Response<Body> {
    let s = app.signup.clone();
    let ask = match s.tokens.open_confirm(token, clock::now()) {
        Opened::Valid(ask) => ask,
        Opened::Expired => {
            return page_response(
                StatusCode::GONE,
                pages::expired(&app.site, &format!("{}/subscribe", s.base_url)),
            )
        }
        Opened::Invalid => return super::invalid(app),
    };
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        // A link confirmed already shows what it did, not a second Confirm button.
        let (email, asked) = (ask.email.clone(), ask.clone());
        let used = s
            .with_store(move |s, store| {
                if store.has_pending(&asked.nonce)? {
                    Ok(None)
                } else {
                    used_link(s, store, &asked).map(Some)
                }
            })
            .await;
        match used {
            Ok(None) => {}
            Ok(Some(answer)) => return confirmed_page(app, &s, answer, &email),
            Err(err) => return super::store_failed(app, &err),
        }
        let titles: Vec<&str> = ask
            .lists
            .iter()
            .filter_map(|l| s.config.managed_list(l))
            .map(|l| l.title.as_str())
            .collect();
        return page_response(
            StatusCode::OK,
            pages::confirm(&app.site, &ask.email, &titles, &s.consent_text()),
        );
    }
    if method != Method::POST {
        return super::method_not_allowed(app, "GET, HEAD, POST");
    }
    if let Err(res) = read_body(req).await {
        return res(app);
    }
    let email = ask.email.clone();
    match s.with_store(move |s, store| confirm(s, store, &ask)).await {
        Ok(answer) => {
            if matches!(answer, Confirmed::Done) {
                s.wake.now();
            }
            confirmed_page(app, &s, answer, &email)
        }
        Err(err) => super::store_failed(app, &err),
    }
}

fn confirmed_page(app: &App, s: &Signup, answer: Confirmed, email: &str) -> Response<Body> {
    match answer {
        Confirmed::Done => page_response(
            StatusCode::OK,
            pages::confirmed(&app.site, email, &s.preferences_url(email)),
        ),
        Confirmed::Kept => page_response(StatusCode::OK, super::pages::kept(&app.site)),
        Confirmed::Used => page_response(
            StatusCode::GONE,
            pages::used(&app.site, &format!("{}/subscribe", s.base_url)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lists() -> Vec<String> {
        vec!["culture".to_string(), "local".to_string()]
    }

    fn form(body: &str) -> Raw {
        Raw::from_form(super::super::form::fields(None, body.as_bytes()))
    }

    #[test]
    fn fields_are_checked() {
        let l = lists();
        let public: Vec<&String> = l.iter().collect();
        let ok = check(
            &public,
            form("email=Ann%40Example.org&name=+Ann+&list=local&list=local"),
        )
        .unwrap();
        assert_eq!(
            (ok.email.as_str(), ok.name.as_str()),
            ("Ann@Example.org", "Ann")
        );
        assert_eq!(ok.lists, vec!["local"]);
        assert!(!ok.honeypot);
        assert!(
            check(&public, form("email=a%40b.org&list=local&website=x"))
                .unwrap()
                .honeypot
        );
        for bad in [
            "email=a%40b.org",
            "email=a%40b.org&list=secret",
            "email=nope&list=local",
            "email=a%40b.org&list=local&name=a%0Db",
            "email=a%40b.org&list=local&name=%E2%80%AEevil",
            "email=a%40b.org&list=local&name=%EE%80%80",
            "email=%22a+b%22%40b.org&list=local",
        ] {
            assert!(check(&public, form(bad)).is_err(), "{bad}");
        }
        let one = [&l[1]];
        assert_eq!(
            check(&one, form("email=a%40b.org")).unwrap().lists,
            vec!["local"]
        );
        let json = Raw::from_json(br#"{"email": "a@b.org", "lists": "culture"}"#).unwrap();
        assert_eq!(check(&public, json).unwrap().lists, vec!["culture"]);
        assert!(Raw::from_json(b"nope").is_none());
    }

    proptest! {
        #[test]
        fn no_input_panics(body in proptest::collection::vec(any::<u8>(), 0..300), name in ".{0,120}") {
            let l = lists();
            let public: Vec<&String> = l.iter().collect();
            let _ = check(&public, Raw::from_form(super::super::form::fields(None, &body)));
            let _ = Raw::from_json(&body).map(|raw| check(&public, raw));
            let raw = Raw { email: "a@b.org".into(), name, lists: vec!["local".into()], ..Raw::default() };
            let _ = check(&public, raw);
        }
    }
}
