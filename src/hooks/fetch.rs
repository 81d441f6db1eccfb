//! The only outgoing requests of `brief serve`: HTTPS GETs to Amazon SNS (the signing
//! certificate, and a subscription's confirmation link), to hosts that pass
//! [`sns_url`], verified against the system's trusted CAs.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 64 * 1024;

/// `url` if it is `https://sns.<region>.amazonaws.com[.cn]/…` (no user, no other
/// port): the hosts Amazon SNS signs and confirms from.
pub(super) fn sns_url(url: &str) -> Option<Uri> {
    let uri: Uri = url.parse().ok()?;
    let authority = uri.authority()?;
    if uri.scheme_str() != Some("https")
        || authority.as_str().contains('@')
        || authority.port_u16().is_some_and(|p| p != 443)
    {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let region = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?
        .strip_prefix("sns.")?;
    let valid_region = region.contains('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid_region.then_some(uri)
}

/// GETs an SNS URL ([`sns_url`] must have passed) and returns a 200 answer's body.
pub(super) async fn get(uri: &Uri) -> Result<Bytes> {
    tokio::time::timeout(TIMEOUT, get_now(uri))
        .await
        .with_context(|| format!("{uri} did not answer within {TIMEOUT:?}"))?
}

async fn get_now(uri: &Uri) -> Result<Bytes> {
    let host = uri.host().context("no host")?.to_string();
    let tcp = TcpStream::connect((host.as_str(), 443))
        .await
        .with_context(|| format!("cannot connect to {host}"))?;
    let name = ServerName::try_from(host.clone()).context("bad host name")?;
    let tls = tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {host} failed"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::USER_AGENT, "brief")
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    if !res.status().is_success() {
        bail!("{uri} answered {}", res.status());
    }
    let body = Limited::new(res.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {uri}: {e}"))?;
    Ok(body.to_bytes())
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_over_https() {
        for good in [
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://SNS.us-gov-west-1.amazonaws.com:443/?Action=ConfirmSubscription&Token=1",
        ] {
            assert!(sns_url(good).is_some(), "{good}");
        }
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.org/x.pem",
            "https://evil.org/sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com@evil.org/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://s3.eu-west-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns.evil_region.amazonaws.com/x.pem",
            "https://127.0.0.1/x.pem",
            "not a url",
        ] {
            assert!(sns_url(bad).is_none(), "{bad}");
        }
    }
}
