//! `…/p/<token>`: the preference centre every message's footer links to. The token is
//! the message's unsubscribe token (opaque, authenticated, one per reader and
//! edition), so the link needs nothing new per message. GET only shows; every change
//! is a POST that carries the token in its URL and must come from this origin (a
//! browser's `Sec-Fetch-Site` and `Origin` say so), so another site cannot make a
//! reader's browser change their subscriptions.

use super::super::writer::Change;
use super::pages::{self, Choice};
use super::{reader_made, unsafe_in_name, Signup, MAX_NAME};
use crate::clock;
use crate::serve::http::Body;
use crate::serve::{header_str, page_response, protect, read_body, App};
use crate::store::{Addition, Consent, Reader, Store, SuppressionSource};
use anyhow::Result;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// The consent text of a change made here.
const CHOSEN_HERE: &str = "Chosen in the preference centre.";

pub(super) async fn route(app: &App, token: &str, req: Request<Incoming>) -> Response<Body> {
    let Some(claims) = app.keyring.verify(token.trim_end_matches('/')) else {
        return crate::serve::invalid(app);
    };
    if claims.test {
        return page_response(StatusCode::OK, crate::serve::pages::test_message(&app.site));
    }
    let s = app.signup.clone();
    let email = claims.email.clone();
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return show(app, &s, email, StatusCode::OK, None).await;
    }
    if method != Method::POST {
        return crate::serve::method_not_allowed(app, "GET, HEAD, POST");
    }
    if !same_origin(&req, &s.base_url) {
        return page_response(
            StatusCode::FORBIDDEN,
            crate::serve::pages::status(
                &app.site,
                "Not from this page",
                "Changes can only be made from the preference page itself. Open the link in your email again.",
            ),
        );
    }
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(res) => return res(app),
    };
    let fields = crate::serve::form::fields(content_type.as_deref(), &body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match field("action").unwrap_or("") {
        "save" => {
            let name = field("name").map(|n| n.trim().to_string());
            if name
                .as_deref()
                .is_some_and(|n| n.chars().count() > MAX_NAME || n.chars().any(unsafe_in_name))
            {
                return show(
                    app,
                    &s,
                    email,
                    StatusCode::BAD_REQUEST,
                    Some("That name is too long or contains characters we cannot use."),
                )
                .await;
            }
            let chosen: Vec<String> = fields
                .iter()
                .filter(|(n, _)| n == "list")
                .map(|(_, v)| v.clone())
                .collect();
            let who = email.clone();
            match s
                .with_store(move |s, store| save(s, store, &who, name.as_deref(), &chosen))
                .await
            {
                Ok(()) => show(app, &s, email, StatusCode::OK, Some("Saved.")).await,
                Err(err) => crate::serve::store_failed(app, &err),
            }
        }
        "unsubscribe" => {
            let change = Change::Suppress {
                email: email.clone(),
                edition: claims.edition.clone(),
                source: SuppressionSource::Page,
            };
            match app.writer.apply(change).await {
                Ok(_) => page_response(
                    StatusCode::OK,
                    crate::serve::pages::unsubscribed(
                        &app.site,
                        &email,
                        // From the site's root: the page may be at `p/<token>/`.
                        &format!(
                            "{}/u/{}/resubscribe",
                            app.base_path,
                            token.trim_end_matches('/')
                        ),
                    ),
                ),
                Err(err) => crate::serve::store_failed(app, &err),
            }
        }
        "export" => {
            let who = email.clone();
            match s.read_store(move |s, store| export(s, store, &who)).await {
                Ok(data) => {
                    let mut res = crate::serve::http::response(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string_pretty(&data).unwrap_or_default(),
                    );
                    let h = res.headers_mut();
                    h.insert(
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_static("attachment; filename=\"my-data.json\""),
                    );
                    protect(h, crate::serve::pages::content_security_policy());
                    res
                }
                Err(err) => crate::serve::store_failed(app, &err),
            }
        }
        "delete" if field("confirm") == Some("yes") => {
            let who = email.clone();
            match s
                .with_store(move |_, store| store.erase_reader(&who, clock::now()))
                .await
            {
                Ok(()) => page_response(StatusCode::OK, pages::deleted(&app.site)),
                Err(err) => crate::serve::store_failed(app, &err),
            }
        }
        "delete" => page_response(StatusCode::OK, pages::confirm_delete(&app.site, &email)),
        _ => show(app, &s, email, StatusCode::BAD_REQUEST, None).await,
    }
}

/// A POST from another site is refused: a browser says where a request comes from in
/// `Sec-Fetch-Site` (modern ones) and `Origin` (every POST). Clients that send
/// neither are not browsers acting for someone else; the token still has to be right.
fn same_origin(req: &Request<Incoming>, base_url: &str) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let base_origin = {
        let after = base_url.split_once("://").map_or("", |(_, rest)| rest);
        let host = after.split('/').next().unwrap_or("");
        format!("{}://{host}", base_url.split("://").next().unwrap_or(""))
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    origin.eq_ignore_ascii_case(&base_origin)
        || host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        })
}

/// The lists a reader can choose here: the public ones, and any other they are on.
fn offered<'a>(
    s: &'a Signup,
    reader: Option<&Reader>,
) -> Vec<(&'a String, &'a crate::config::ManagedList)> {
    s.config
        .lists
        .iter()
        .filter(|(name, l)| l.public || reader.is_some_and(|r| r.lists.contains(name)))
        .collect()
}

async fn show(
    app: &App,
    s: &Arc<Signup>,
    email: String,
    status: StatusCode,
    notice: Option<&'static str>,
) -> Response<Body> {
    let who = email.clone();
    let read = s
        .read_store(move |_, store| {
            let erased = crate::store::erased_key(&who);
            let off = store.suppression(&who)?.is_some() || store.suppression(&erased)?.is_some();
            Ok((store.reader(&who)?, off))
        })
        .await;
    let (reader, unsubscribed) = match read {
        Ok(found) => found,
        Err(err) => return crate::serve::store_failed(app, &err),
    };
    let choices: Vec<Choice<'_>> = offered(s, reader.as_ref())
        .into_iter()
        .map(|(name, l)| Choice {
            name,
            title: &l.title,
            description: &l.description,
            checked: reader.as_ref().is_some_and(|r| r.lists.contains(name)),
        })
        .collect();
    let name = reader.as_ref().map(|r| r.name.as_str()).or(
        // A reader from a CSV list gives a name once they choose a list here.
        (!choices.is_empty()).then_some(""),
    );
    page_response(
        status,
        pages::preferences(&app.site, &email, name, &choices, unsubscribed, notice),
    )
}

/// Applies the reader's choice: lists added (with a consent record; a confirmed
/// reader stays confirmed), lists left, the name changed. Choosing a list lifts the
/// reader's own unsubscribe, or erasure.
fn save(
    s: &Signup,
    store: &Store,
    email: &str,
    name: Option<&str>,
    chosen: &[String],
) -> Result<()> {
    let now = clock::now();
    let reader = store.reader(email)?;
    let offered: Vec<String> = offered(s, reader.as_ref())
        .into_iter()
        .map(|(n, _)| n.clone())
        .collect();
    let current = reader.as_ref().map(|r| r.lists.clone()).unwrap_or_default();
    let add: Vec<String> = offered
        .iter()
        .filter(|l| chosen.contains(l) && !current.contains(l))
        .cloned()
        .collect();
    let leave: Vec<&String> = offered
        .iter()
        .filter(|l| !chosen.contains(l) && current.contains(l))
        .collect();
    if !add.is_empty() {
        if let Some(x) = store.suppression(email)? {
            if reader_made(x.source) {
                store.resubscribe(email)?;
            }
        }
        // The reader deleted their data before: only the hash kept them off.
        if let Some(x) = store.suppression(&crate::store::erased_key(email))? {
            if reader_made(x.source) {
                store.forget_erasure(email)?;
            }
        }
        store.add_reader(&Addition {
            address: email,
            name,
            fields: None,
            lists: &add,
            consent: Consent {
                at: now,
                form: "preferences".into(),
                lists: add.clone(),
                text: CHOSEN_HERE.into(),
            },
        })?;
    } else if let (Some(name), Some(_)) = (name, &reader) {
        store.rename_reader(email, name, now)?;
    }
    for list in leave {
        store.remove_membership(email, list)?;
    }
    Ok(())
}

/// "Download my data": everything the store holds about the address.
fn export(s: &Signup, store: &Store, email: &str) -> Result<serde_json::Value> {
    let reader = store.reader(email)?;
    let subscriptions: Vec<serde_json::Value> = reader
        .as_ref()
        .map(|r| {
            r.lists
                .iter()
                .map(|l| {
                    json!({
                        "list": l,
                        "title": s.config.managed_list(l).map(|m| m.title.as_str()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "address": email,
        "name": reader.as_ref().map(|r| r.name.as_str()),
        "fields": reader.as_ref().and_then(|r| serde_json::from_str::<serde_json::Value>(&r.fields).ok()),
        "confirmed_at": reader.as_ref().map(|r| r.confirmed_at),
        "subscriptions": subscriptions,
        "consents": store.consents(email)?,
        "suppression": store.suppression(email)?,
        "messages": store.deliveries_to(email)?,
        "signup_mails": store.signup_mails(email)?,
    }))
}
