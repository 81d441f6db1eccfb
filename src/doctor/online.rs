//! `brief doctor --online`: the unsubscribe endpoint as a mailbox provider sees it. A
//! link of a *test* token (the kind test sends carry: `brief serve` recognises it and
//! changes nothing) is fetched with GET, then POSTed the RFC 8058 one-click body; both
//! must answer 200 without a redirect.

use super::{Check, Status, Verdict};
use crate::config::Config;
use crate::token::{self, Keyring};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Whose unsubscribe link is tried: an address that can never exist (RFC 2606).
const PROBE_ADDRESS: &str = "brief-doctor@example.invalid";
const PROBE_EDITION: &str = "brief-doctor";
const TIMEOUT: Duration = Duration::from_secs(15);

pub(super) async fn one_click(config: &Config) -> Vec<Verdict> {
    let mut findings = Vec::new();
    let base = &config.newsletter.base_url;
    if !base.starts_with("https://") {
        findings.push(Verdict::new(
            Check::OneClick,
            Status::Error,
            format!("base_url {base} is not https://: mailbox providers only make one-click (RFC 8058) POSTs to https URLs"),
        ));
    }
    let secret = match config.secret(false) {
        Ok(s) => s,
        Err(e) => {
            findings.push(Verdict::new(
                Check::OneClick,
                Status::Error,
                format!("cannot make a test link: {e:#}"),
            ));
            return findings;
        }
    };
    let token =
        Keyring::new(&secret, &config.newsletter.list_id).issue(PROBE_ADDRESS, PROBE_EDITION, true);
    let url = token::unsubscribe_url(base, &token);
    let shown = token::unsubscribe_url(base, "<test token>");
    let err = |message: String| Verdict::new(Check::OneClick, Status::Error, message);
    match fetch(&url, Method::GET, None).await {
        Err(e) => {
            findings.push(err(format!("GET {shown}: {e:#}")));
            return findings;
        }
        Ok((StatusCode::OK, _)) => {}
        Ok((StatusCode::NOT_FOUND, _)) => {
            findings.push(err(format!(
                "GET {shown}: 404: the server does not accept brief's links: run `brief serve` there with the same secret (${}) and list_id, behind base_url's path",
                config.unsubscribe.secret_env
            )));
            return findings;
        }
        Ok((status, _)) => {
            findings.push(err(format!(
                "GET {shown}: {status}, expected 200 (the confirmation page)"
            )));
            return findings;
        }
    }
    let post = fetch(
        &url,
        Method::POST,
        Some((
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )),
    )
    .await;
    findings.push(match post {
        Err(e) => err(format!("POST {shown}: {e:#}")),
        Ok((StatusCode::OK, _)) => Verdict::new(
            Check::OneClick,
            Status::Ok,
            format!("POST {shown} with List-Unsubscribe=One-Click answers 200 (a test link: nobody was unsubscribed)"),
        ),
        Ok((status, _)) if status.is_redirection() => err(format!(
            "POST {shown}: {status}: one-click POSTs must be answered directly; mailbox providers do not follow redirects"
        )),
        Ok((status, _)) => err(format!(
            "POST {shown}: {status}, expected 200: the endpoint does not honour RFC 8058 one-click"
        )),
    });
    findings
}

/// One HTTP/1.1 request; the status and body of the answer.
async fn fetch(
    url: &str,
    method: Method,
    form: Option<(&str, &str)>,
) -> Result<(StatusCode, Bytes)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        bail!("not an http(s) URL");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = super::rules::base_url_host(url).context("the URL has no host")?;
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !p.contains(']') => p.parse().context("bad port in the URL")?,
        _ if tls => 443,
        _ => 80,
    };
    let connect_host = host.trim_matches(['[', ']']).to_string();
    let tcp = tokio::time::timeout(
        TIMEOUT,
        tokio::net::TcpStream::connect((connect_host.as_str(), port)),
    )
    .await
    .map_err(|_| anyhow!("connecting to {authority} timed out"))?
    .with_context(|| format!("cannot connect to {authority}"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "brief-doctor");
    let body = match form {
        Some((content_type, body)) => {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body)?;
    let exchange = async {
        if tls {
            let name = rustls::pki_types::ServerName::try_from(connect_host.clone())
                .context("the URL's host is not a valid TLS server name")?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(tls_config()?))
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS with {authority} failed"))?;
            send(stream, request).await
        } else {
            send(tcp, request).await
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{authority} did not answer within {}s", TIMEOUT.as_secs()))?
}

async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The system's trusted CAs (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace them).
fn tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
