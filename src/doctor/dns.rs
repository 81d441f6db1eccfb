//! The few DNS questions `brief doctor` asks (TXT, MX, A/AAAA), through hickory's
//! resolver: the system's resolvers, or one `--nameserver ADDR:PORT`.

use anyhow::{Context, Result};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub(super) struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    pub(super) fn new(nameserver: Option<SocketAddr>) -> Result<Dns> {
        let mut builder = match nameserver {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .context("cannot read the system's DNS configuration (/etc/resolv.conf)")?,
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        Ok(Dns {
            resolver: builder.build().context("cannot set up the DNS resolver")?,
        })
    }

    /// The TXT records at `name`, each one's strings joined (RFC 7208 §3.3); empty when
    /// the name has none or does not exist.
    pub(super) async fn txt(&self, name: &str) -> Result<Vec<String>> {
        let lookup = self.resolver.txt_lookup(fqdn(name)).await;
        Ok(records(lookup, name, "TXT")?
            .iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The MX records at `name` (preference, exchange without the final dot), lowest
    /// preference first.
    pub(super) async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>> {
        let lookup = self.resolver.mx_lookup(fqdn(name)).await;
        let mut out: Vec<(u16, String)> = records(lookup, name, "MX")?
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                )),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The IPv4 and IPv6 addresses of `name`.
    pub(super) async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>> {
        let v4 = records(self.resolver.ipv4_lookup(fqdn(name)).await, name, "A")?;
        let v6 = records(self.resolver.ipv6_lookup(fqdn(name)).await, name, "AAAA")?;
        Ok(v4
            .iter()
            .chain(&v6)
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect())
    }
}

/// A name as asked: absolute, so no search domain is ever appended.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The answer's data; "no such name" and "no such record" are an empty answer, any
/// other failure (timeout, SERVFAIL) an error naming the question.
fn records(
    lookup: Result<hickory_resolver::lookup::Lookup, NetError>,
    name: &str,
    kind: &str,
) -> Result<Vec<RData>> {
    match lookup {
        Ok(l) => Ok(l.answers().iter().map(|r| r.data.clone()).collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("DNS lookup of {kind} {name} failed: {e}")),
    }
}
