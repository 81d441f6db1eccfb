//! `brief serve`: the unsubscribe endpoint (RFC 8058 one-click POST, a confirmation
//! page on GET), readers' signups and preference centre ([`signup`]), provider
//! webhooks and the web archive, behind a TLS-terminating reverse proxy.
//!
//! It answers the path part of `base_url` (`/brief/u/<token>` for
//! `https://news.example.org/brief`) and the same paths without it (for proxies that
//! strip the prefix). GET and HEAD never change state; a POST is answered only after
//! the suppression is committed by the single [`writer`] thread.

mod archive;
mod form;
pub mod http;
mod limits;
pub mod pages;
mod signup;
mod writer;

pub(crate) use signup::{
    template_problems as signup_template_problems, TEMPLATE_FILES as SIGNUP_TEMPLATE_FILES,
};

use crate::config::Config;
use crate::store::{Store, SuppressionSource};
use crate::token::{Claims, Keyring};
use anyhow::{Context, Result};
use bytes::Bytes;
use http::Body;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use limits::RateLimiter;
use pages::Site;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use writer::{Applied, Change, SuppressionQueue, SuppressionWriter};

/// Largest request body read (a one-click body is 26 bytes).
const MAX_BODY: usize = 16 * 1024;
/// Largest provider webhook body (SendGrid batches events; SES notifications carry headers).
const MAX_HOOK_BODY: usize = 1024 * 1024;
/// Time a request has to be answered in full once its head is read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

fn limits(config: &Config) -> http::Limits {
    let max_connections = config.unsubscribe.max_connections.max(1);
    http::Limits {
        max_connections,
        // A slow client holds its connections until the head timeout: a 32nd of the slots.
        per_client: (max_connections / 32).max(1),
        head_timeout: Duration::from_secs(10),
        max_head: 16 * 1024,
        drain_timeout: Duration::from_secs(10),
    }
}

/// Everything a request handler needs; shared by all connections.
struct App {
    keyring: Keyring,
    site: Site,
    /// The path part of `base_url`, without a trailing slash ("" at the root).
    base_path: String,
    archive_root: PathBuf,
    writer: SuppressionQueue,
    limiter: Option<RateLimiter>,
    limits: http::Limits,
    hooks: crate::hooks::Hooks,
    signup: Arc<signup::Signup>,
    clicks: Arc<crate::tracking::recorder::Recorder>,
}

/// Runs the server on `listen` until SIGTERM or SIGINT, then drains requests in flight.
pub fn run(config: &Config, listen: &str) -> Result<()> {
    let keyring = Keyring::for_verifying(config)?;
    let archive_root = config.resolve(&config.archive.out);
    archive::refuse_private_files(config, &archive_root)?;
    let store = Store::for_config(config)?;
    let (writer, handle) = SuppressionWriter::start(store)?;
    let (signup, mailer) = signup::Signup::start(config, &keyring)?;
    let app = Arc::new(App {
        keyring,
        site: Site {
            name: config.newsletter.name.clone(),
            contact: contact_address(config),
            language: config.newsletter.language.clone(),
        },
        base_path: base_path(&config.newsletter.base_url),
        archive_root,
        writer: handle,
        limiter: RateLimiter::new(
            config.unsubscribe.client_rate,
            config.unsubscribe.client_burst,
        ),
        limits: limits(config),
        hooks: crate::hooks::Hooks::from_config(config)?,
        signup,
        clicks: crate::tracking::recorder::Recorder::start(config)?,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        serve(app, listener, http::shutdown_signal()).await
    });
    // Every handle is gone with the app: the writer finishes its last group and stops.
    runtime.shutdown_timeout(Duration::from_secs(1));
    writer.finish(Duration::from_secs(10));
    mailer.finish(Duration::from_secs(10));
    served
}

/// Serves `app` on `listener` until `shutdown` completes.
async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener.local_addr()?;
    eprintln!(
        "brief serve: listening on http://{local}{}/ (unsubscribe links under {}/u/)",
        app.base_path, app.base_path
    );
    let limits = app.limits;
    let handler = move |peer, req| {
        let app = app.clone();
        async move { handle(&app, peer, req).await }
    };
    let stopping = async {
        shutdown.await;
        eprintln!("brief serve: stopping");
    };
    http::run(listener, stopping, limits, handler).await?;
    eprintln!("brief serve: stopped");
    Ok(())
}

async fn handle(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    match tokio::time::timeout(REQUEST_TIMEOUT, route(app, peer, req)).await {
        Ok(response) => response,
        Err(_) => page_response(
            StatusCode::REQUEST_TIMEOUT,
            pages::status(
                &app.site,
                "Too slow",
                "The request took too long. Please try again.",
            ),
        ),
    }
}

async fn route(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let rel = strip_base(&path, &app.base_path);
    if rel == "/healthz" {
        return text_response(StatusCode::OK, "ok\n");
    }
    // Providers deliver in bursts from a few addresses: not subject to the per-reader limit.
    if let Some(provider) = rel.strip_prefix("/hooks/") {
        return hooks_route(app, provider, req).await;
    }
    if let Some(limiter) = &app.limiter {
        if !limiter.allow(limits::client_ip(peer, req.headers())) {
            let mut res = page_response(
                StatusCode::TOO_MANY_REQUESTS,
                pages::status(
                    &app.site,
                    "Too many requests",
                    "Please wait a moment and try again.",
                ),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
    }
    if let Some(area) = signup::area(rel) {
        return signup::route(app, peer, area, req).await;
    }
    if let Some(token) = rel.strip_prefix("/c/") {
        return click_route(app, token, peer, &req).await;
    }
    match rel.strip_prefix("/u/") {
        Some(rest) => unsubscribe_route(app, rest, req).await,
        None => archive_route(app, rel, &req).await,
    }
}

/// `/c/<token>`: a tracked link (src/tracking/recorder.rs).
async fn click_route(
    app: &App,
    token: &str,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    use crate::tracking::recorder::{redirect, ClickRequest};
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        return method_not_allowed(app, "GET, HEAD");
    }
    let (recorder, token) = (app.clicks.clone(), token.to_string());
    let (headers, client) = (
        req.headers().clone(),
        limits::client_ip(peer, req.headers()),
    );
    let followed = tokio::task::spawn_blocking(move || {
        recorder.follow(&ClickRequest {
            token: &token,
            head,
            headers: &headers,
            client,
        })
    })
    .await;
    match followed {
        Ok(Ok(Some(url))) => redirect(&url).unwrap_or_else(|| not_found(app)),
        Ok(Ok(None)) => not_found(app),
        Ok(Err(e)) => store_failed(app, &e),
        Err(e) => store_failed(app, &anyhow::anyhow!("{e}")),
    }
}

fn not_found(app: &App) -> Response<Body> {
    page_response(
        StatusCode::NOT_FOUND,
        pages::status(&app.site, "Not found", "There is no page at this address."),
    )
}

/// `/u/<token>` and `/u/<token>/resubscribe`.
async fn unsubscribe_route(app: &App, rest: &str, req: Request<Incoming>) -> Response<Body> {
    let (token, tail) = match rest.split_once('/') {
        Some((token, tail)) => (token, tail),
        None => (rest, ""),
    };
    // Every bad link, whatever is wrong with it, gets the same answer.
    let Some(claims) = app.keyring.verify(token) else {
        return invalid(app);
    };
    let method = req.method().clone();
    let reading = method == Method::GET || method == Method::HEAD;
    match (tail, reading, method == Method::POST) {
        ("", true, _) if claims.test => {
            page_response(StatusCode::OK, pages::test_message(&app.site))
        }
        ("", true, _) => page_response(StatusCode::OK, pages::confirm(&app.site, &claims.email)),
        ("", _, true) => {
            let content_type = header_str(&req, header::CONTENT_TYPE);
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(res) => return res(app),
            };
            let source = match form::intent(content_type.as_deref(), &body) {
                form::Intent::OneClick => SuppressionSource::OneClick,
                form::Intent::Button => SuppressionSource::Page,
                form::Intent::Unknown => {
                    // Not a request we understand: ask again, change nothing.
                    return page_response(
                        StatusCode::BAD_REQUEST,
                        pages::confirm(&app.site, &claims.email),
                    );
                }
            };
            if claims.test {
                return page_response(StatusCode::OK, pages::test_message(&app.site));
            }
            let resubscribe_action = if rest.ends_with('/') {
                "resubscribe".to_string()
            } else {
                format!("{token}/resubscribe")
            };
            unsubscribe(app, claims, &resubscribe_action, source).await
        }
        ("resubscribe", true, _) if claims.test => {
            page_response(StatusCode::OK, pages::test_message(&app.site))
        }
        ("resubscribe", true, _) => page_response(
            StatusCode::OK,
            pages::confirm_resubscribe(&app.site, &claims.email),
        ),
        ("resubscribe", _, true) => {
            if let Err(res) = read_body(req).await {
                return res(app);
            }
            if claims.test {
                return page_response(StatusCode::OK, pages::test_message(&app.site));
            }
            resubscribe(app, claims, token).await
        }
        ("" | "resubscribe", _, _) => method_not_allowed(app, "GET, HEAD, POST"),
        _ => invalid(app),
    }
}

async fn unsubscribe(
    app: &App,
    claims: Claims,
    resubscribe_action: &str,
    source: SuppressionSource,
) -> Response<Body> {
    let change = Change::Suppress {
        email: claims.email.clone(),
        edition: claims.edition,
        source,
    };
    match app.writer.apply(change).await {
        Ok(_) => page_response(
            StatusCode::OK,
            pages::unsubscribed(&app.site, &claims.email, resubscribe_action),
        ),
        Err(err) => store_failed(app, &err),
    }
}

async fn resubscribe(app: &App, claims: Claims, token: &str) -> Response<Body> {
    let change = Change::Resubscribe {
        email: claims.email.clone(),
    };
    match app.writer.apply(change).await {
        Ok(Applied::Kept(_)) => page_response(StatusCode::OK, pages::kept(&app.site)),
        Ok(_) => page_response(
            StatusCode::OK,
            pages::resubscribed(&app.site, &claims.email, token),
        ),
        Err(err) => store_failed(app, &err),
    }
}

fn store_failed(app: &App, err: &anyhow::Error) -> Response<Body> {
    tracing::error!("cannot record a change to the suppression list: {err:#}");
    let mut res = page_response(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::status(
            &app.site,
            "Please try again",
            "Your request could not be recorded just now. Nothing was changed; please try again in a minute.",
        ),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    res
}

/// `POST /hooks/<provider>`: a provider's webhook, answered in plain text; 404 for a
/// provider `[hooks]` does not configure.
async fn hooks_route(app: &App, provider: &str, req: Request<Incoming>) -> Response<Body> {
    use crate::hooks::Refusal;
    if !app.hooks.accepts(provider) {
        return http::response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        );
    }
    if req.method() != Method::POST {
        let mut res = http::response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "POST only\n",
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let headers = req.headers().clone();
    let body = match read_body_within(req, MAX_HOOK_BODY).await {
        Ok(body) => body,
        Err(page) => return page(app),
    };
    let (status, text) = match app.hooks.handle(provider, &headers, &body).await {
        Ok(summary) => (StatusCode::OK, summary),
        Err(Refusal::Unauthorized(why)) => (StatusCode::UNAUTHORIZED, format!("{why}\n")),
        Err(Refusal::Forbidden(why)) => (StatusCode::FORBIDDEN, format!("{why}\n")),
        Err(Refusal::Malformed(why)) => (StatusCode::BAD_REQUEST, format!("{why}\n")),
        Err(Refusal::Unavailable(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    };
    if status != StatusCode::OK {
        tracing::warn!("{provider} webhook refused ({status}): {}", text.trim_end());
    }
    let mut res = http::response(status, "text/plain; charset=utf-8", text);
    if status == StatusCode::UNAUTHORIZED && provider == "postmark" {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"brief hooks\""),
        );
    }
    res
}

type ErrorPage = fn(&App) -> Response<Body>;

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ErrorPage> {
    read_body_within(req, MAX_BODY).await
}

/// Reads a request body of at most `max` bytes.
async fn read_body_within(req: Request<Incoming>, max: usize) -> Result<Bytes, ErrorPage> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large);
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Err(_) => Err(bad_request),
    }
}

fn too_large(app: &App) -> Response<Body> {
    page_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        pages::status(&app.site, "Too large", "That request was too large."),
    )
}

fn bad_request(app: &App) -> Response<Body> {
    page_response(
        StatusCode::BAD_REQUEST,
        pages::status(&app.site, "Bad request", "That request could not be read."),
    )
}

fn invalid(app: &App) -> Response<Body> {
    page_response(StatusCode::NOT_FOUND, pages::invalid_link(&app.site))
}

fn method_not_allowed(app: &App, allow: &'static str) -> Response<Body> {
    let mut res = page_response(
        StatusCode::METHOD_NOT_ALLOWED,
        pages::status(
            &app.site,
            "Not allowed",
            "This address does not accept that method.",
        ),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

async fn archive_route(app: &App, rel: &str, req: &Request<Incoming>) -> Response<Body> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(app, "GET, HEAD");
    }
    let since =
        header_str(req, header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(&v).ok());
    let root = app.archive_root.clone();
    let rel_owned = rel.to_string();
    let found = tokio::task::spawn_blocking(move || {
        let lookup = archive::lookup(&root, &rel_owned);
        let file = match &lookup {
            archive::Lookup::File { path, .. } => std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| {
                    // Not modified: no need to read the file.
                    let unchanged =
                        since.is_some_and(|s| whole_seconds(modified) <= whole_seconds(s));
                    let bytes = if unchanged {
                        Some(Vec::new())
                    } else {
                        std::fs::read(path).ok()
                    };
                    bytes.map(|b| (b, modified, unchanged))
                }),
            _ => None,
        };
        (lookup, file)
    })
    .await;
    match found {
        Ok((
            archive::Lookup::File {
                content_type,
                cache_control,
                ..
            },
            Some((bytes, modified, unchanged)),
        )) => {
            let status = if unchanged {
                StatusCode::NOT_MODIFIED
            } else {
                StatusCode::OK
            };
            let mut res = http::response(status, content_type, bytes);
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
                h.insert(header::LAST_MODIFIED, v);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            );
            // Same origin as the unsubscribe pages: no script, no framing.
            protect(h, pages::archive_content_security_policy());
            res
        }
        Ok((archive::Lookup::AddSlash(location), _)) => {
            let mut res = page_response(
                StatusCode::MOVED_PERMANENTLY,
                pages::status(&app.site, "Moved", "This page is one folder down."),
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
        _ => page_response(
            StatusCode::NOT_FOUND,
            pages::status(&app.site, "Not found", "There is no page at this address."),
        ),
    }
}

fn whole_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HTML page with the headers every page carries: never cached (it may be about
/// one reader), no referrer, a strict CSP.
fn page_response(status: StatusCode, html: String) -> Response<Body> {
    let mut res = http::response(status, "text/html; charset=utf-8", html);
    protect(res.headers_mut(), pages::content_security_policy());
    res
}

/// The headers that keep a page from being framed, sniffed or leaking its address.
fn protect(h: &mut header::HeaderMap, content_security_policy: &'static str) {
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy),
    );
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    http::response(status, "text/plain; charset=utf-8", text)
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The path part of `base_url` without its trailing slash: `/brief`, or "" at the root.
fn base_path(base_url: &str) -> String {
    let after_scheme = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/').to_string()
}

/// The request path relative to the base path; paths without the prefix are taken as
/// already stripped by the proxy.
fn strip_base<'a>(path: &'a str, base: &str) -> &'a str {
    if base.is_empty() {
        return path;
    }
    match path.strip_prefix(base) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

fn contact_address(config: &Config) -> String {
    config.newsletter.contact_mailbox().email.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(base_path("https://news.example.org/brief"), "/brief");
        assert_eq!(base_path("https://news.example.org/brief/"), "/brief");
        assert_eq!(base_path("https://news.example.org"), "");
        assert_eq!(base_path("https://news.example.org/"), "");
        assert_eq!(strip_base("/brief/u/x", "/brief"), "/u/x");
        assert_eq!(strip_base("/brief", "/brief"), "/");
        assert_eq!(strip_base("/u/x", "/brief"), "/u/x");
        assert_eq!(strip_base("/briefing/x", "/brief"), "/briefing/x");
        assert_eq!(strip_base("/x", ""), "/x");
    }
}
