//! `brief doctor`: the DNS a newsletter needs to reach inboxes (SPF, the DKIM key,
//! DMARC, MX), looked up live and compared with brief.toml, and with `--online` the
//! one-click unsubscribe contract (RFC 8058) of the running `brief serve`. Every
//! finding that is not fine says what to publish or change, with the record to paste.

mod dkim_key;
mod dns;
mod online;
pub mod rules;
mod spf;

use crate::config::{Config, Transport};
use anyhow::Result;
use dkim_key::PublicKey;
use dns::Dns;
use rules::{organizational_domain, relaxed_aligned, strict_aligned};
use std::net::{IpAddr, SocketAddr};

/// TTL of the records brief suggests.
const TTL: u32 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Spf,
    Dkim,
    Dmarc,
    Mx,
    OneClick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

/// One thing `brief doctor` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub check: Check,
    pub status: Status,
    pub message: String,
    /// The DNS record to publish instead (zone-file syntax), when one fixes it.
    pub record: Option<String>,
}

impl Verdict {
    fn new(check: Check, status: Status, message: impl Into<String>) -> Verdict {
        Verdict {
            check,
            status,
            message: message.into(),
            record: None,
        }
    }

    fn publish(mut self, record: String) -> Verdict {
        self.record = Some(record);
        self
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = match self.check {
            Check::Spf => "SPF",
            Check::Dkim => "DKIM",
            Check::Dmarc => "DMARC",
            Check::Mx => "MX",
            Check::OneClick => "one-click",
        };
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        };
        write!(f, "{check}: {status}: {}", self.message)?;
        if let Some(record) = &self.record {
            write!(f, "\n    publish: {record}")?;
        }
        Ok(())
    }
}

pub struct Options {
    /// Ask this DNS server instead of the system's resolvers.
    pub nameserver: Option<SocketAddr>,
    /// Also try the unsubscribe endpoint over the network.
    pub online: bool,
}

/// The domain of the SMTP envelope sender (where bounces go, what SPF checks):
/// `[delivery] return_path`, or the From address.
pub fn return_path_domain(config: &Config) -> String {
    match &config.delivery.return_path {
        Some(address) => address
            .rsplit_once('@')
            .map_or(address.as_str(), |(_, domain)| domain)
            .trim_end_matches('>')
            .to_ascii_lowercase(),
        None => config.from_domain(),
    }
}

/// Every signing key of `[dkim]`: (domain, selector, key_file as written).
fn dkim_keys(dkim: &crate::config::Dkim) -> Vec<(String, String, std::path::PathBuf)> {
    let mut keys = vec![(
        dkim.domain.clone(),
        dkim.selector.clone(),
        dkim.key_file.clone(),
    )];
    keys.extend(dkim.keys.iter().map(|k| {
        (
            k.domain.clone().unwrap_or_else(|| dkim.domain.clone()),
            k.selector.clone(),
            k.key_file.clone(),
        )
    }));
    keys
}

/// Runs every check; never stops at the first problem.
pub async fn examine(config: &Config, options: &Options) -> Result<Vec<Verdict>> {
    let dns = Dns::new(options.nameserver)?;
    let mut findings = vec![spf_finding(config, &dns).await];
    findings.extend(dkim_findings(config, &dns).await);
    findings.extend(dmarc_findings(config, &dns).await);
    findings.push(mx_finding(config, &dns).await);
    if options.online {
        findings.extend(online::one_click(config).await);
    }
    Ok(findings)
}

/// A TXT record line: the text split into strings of at most 255 bytes (RFC 1035).
fn txt_record(name: &str, text: &str) -> String {
    let mut strings = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        strings.push(format!(
            "\"{}\"",
            piece.replace('\\', "\\\\").replace('"', "\\\"")
        ));
        rest = tail;
    }
    format!("{name}. {TTL} IN TXT {}", strings.join(" "))
}

fn lookup_failed(check: Check, e: &anyhow::Error) -> Verdict {
    Verdict::new(check, Status::Error, format!("{e:#}"))
}

/// The relay's addresses that the world sees: `smtp.host` resolved, private and
/// loopback addresses left out (mail leaves such a network through another address).
async fn relay_addresses(config: &Config, dns: &Dns) -> Vec<IpAddr> {
    if config.delivery.transport != Transport::Smtp {
        return Vec::new();
    }
    let host = config.smtp.host.trim_matches(['[', ']']);
    let all = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.addresses(host).await.unwrap_or_default(),
    };
    all.into_iter().filter(is_public).collect()
}

fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// The SPF term that authorizes the relay.
fn relay_term(config: &Config, relay: &[IpAddr]) -> String {
    match relay.first() {
        Some(IpAddr::V4(ip)) => format!("ip4:{ip}"),
        Some(IpAddr::V6(ip)) => format!("ip6:{ip}"),
        None if config.delivery.transport == Transport::Smtp
            && config.smtp.host.parse::<IpAddr>().is_err()
            && config.smtp.host != "localhost" =>
        {
            format!("a:{}", config.smtp.host)
        }
        // Nothing brief knows names the address mail leaves from.
        None => "ip4:<your relay's public address>".to_string(),
    }
}

async fn spf_finding(config: &Config, dns: &Dns) -> Verdict {
    let domain = return_path_domain(config);
    let relay = relay_addresses(config, dns).await;
    let term = relay_term(config, &relay);
    let fresh = txt_record(&domain, &format!("v=spf1 {term} ~all"));
    let txt = match dns.txt(&domain).await {
        Ok(t) => t,
        Err(e) => return lookup_failed(Check::Spf, &e),
    };
    let err = |message: String| Verdict::new(Check::Spf, Status::Error, message);
    let text = match spf::select(&txt) {
        Err(e) => return err(format!("{domain}: {e}")).publish(fresh),
        Ok(None) => {
            return err(format!(
                "{domain} (the return-path domain) has no SPF record: receivers cannot tell that your relay may send for it"
            ))
            .publish(fresh)
        }
        Ok(Some(t)) => t,
    };
    let record = match spf::parse(text) {
        Ok(r) => r,
        Err(e) => return err(format!("{domain}: \"{text}\": {e}")).publish(fresh),
    };
    if record.allows_everyone() {
        return err(format!(
            "{domain}: \"{text}\" lets any server on the internet send as {domain} (`+all`); receivers give it no credit"
        ))
        .publish(fresh);
    }
    if record.authorizes_nobody() {
        return err(format!(
            "{domain}: \"{text}\" authorizes no server at all: every message fails SPF"
        ))
        .publish(txt_record(&domain, &spf::Record::with_term(text, &term)));
    }
    match spf::count_lookups(dns, &record).await {
        Err(e) => return err(format!("{domain}: \"{text}\": {e}")),
        Ok(n) if n > spf::MAX_LOOKUPS => {
            return err(format!(
                "{domain}: \"{text}\" needs {n} DNS lookups (includes counted); more than {} is a permanent error, so SPF fails: replace includes by the ip4:/ip6: ranges they stand for",
                spf::MAX_LOOKUPS
            ))
        }
        Ok(_) => {}
    }
    for ip in &relay {
        match spf::check_host(dns, *ip, &domain, &record).await {
            spf::Verdict::Pass => {}
            spf::Verdict::TempError(e) => {
                return Verdict::new(
                    Check::Spf,
                    Status::Warning,
                    format!("{domain}: \"{text}\": cannot evaluate it for the relay {ip}: {e}"),
                )
            }
            verdict => {
                let term = match ip {
                    IpAddr::V4(v4) => format!("ip4:{v4}"),
                    IpAddr::V6(v6) => format!("ip6:{v6}"),
                };
                let why = match verdict {
                    spf::Verdict::PermError(e) => format!("a permanent error ({e})"),
                    v => format!("`{v:?}`").to_lowercase(),
                };
                return err(format!(
                    "{domain}: \"{text}\" gives the relay {} ({ip}) {why}: its mail cannot pass SPF",
                    config.smtp.host
                ))
                .publish(txt_record(&domain, &spf::Record::with_term(text, &term)));
            }
        }
    }
    if relay.is_empty() {
        let relay = match config.delivery.transport {
            Transport::Smtp => format!("the relay {} has no public address", config.smtp.host),
            Transport::Outbox => "the outbox transport names no relay".to_string(),
        };
        Verdict::new(
            Check::Spf,
            Status::Ok,
            format!(
                "{domain}: \"{text}\" ({relay} brief can check: make sure the record covers the address your mail leaves from)"
            ),
        )
    } else {
        let ips: Vec<String> = relay.iter().map(ToString::to_string).collect();
        Verdict::new(
            Check::Spf,
            Status::Ok,
            format!(
                "{domain}: \"{text}\" lets the relay pass ({})",
                ips.join(", ")
            ),
        )
    }
}

async fn dkim_findings(config: &Config, dns: &Dns) -> Vec<Verdict> {
    let Some(dkim) = &config.dkim else {
        return vec![Verdict::new(
            Check::Dkim,
            Status::Warning,
            format!(
                "no [dkim] in brief.toml: brief does not sign; unless your relay signs with a key of {} (check a received message's DKIM-Signature d=), Gmail and Yahoo reject or junk bulk mail",
                config.from_domain()
            ),
        )];
    };
    let mut findings = Vec::new();
    for (domain, selector, key_file) in dkim_keys(dkim) {
        findings.push(dkim_key_finding(config, dns, &domain, &selector, &key_file).await);
    }
    findings
}

/// One key: is its public half published at `<selector>._domainkey.<domain>`?
async fn dkim_key_finding(
    config: &Config,
    dns: &Dns,
    domain: &str,
    selector: &str,
    key_file: &std::path::Path,
) -> Verdict {
    let path = config.resolve(key_file);
    let key = match std::fs::read_to_string(&path)
        .map_err(anyhow::Error::from)
        .and_then(|pem| PublicKey::from_private_pem(&pem))
    {
        Ok(k) => k,
        Err(e) => {
            return Verdict::new(
                Check::Dkim,
                Status::Error,
                format!("[dkim] key_file {}: {e:#}", path.display()),
            )
        }
    };
    let name = format!("{selector}._domainkey.{domain}");
    let wanted = txt_record(&name, &key.record_text());
    let txt = match dns.txt(&name).await {
        Ok(t) => t,
        Err(e) => return lookup_failed(Check::Dkim, &e),
    };
    let records: Vec<Vec<(String, String)>> = txt
        .iter()
        .map(|t| dkim_key::tags(t))
        .filter(|tags| tags.iter().any(|(k, _)| k == "p"))
        .collect();
    let err = |message: String| Verdict::new(Check::Dkim, Status::Error, message);
    if records.is_empty() {
        return err(format!(
            "{name} has no DKIM key record: receivers cannot verify brief's signatures"
        ))
        .publish(wanted);
    }
    let tag = |tags: &[(String, String)], name: &str| {
        tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    for tags in &records {
        let kind = tag(tags, "k").unwrap_or_else(|| "rsa".to_string());
        let p = tag(tags, "p").unwrap_or_default();
        if key.matches(&kind, &p) {
            return Verdict::new(
                Check::Dkim,
                Status::Ok,
                format!(
                    "{name} publishes the {} public key of {}",
                    key.kind(),
                    path.display()
                ),
            );
        }
    }
    if records
        .iter()
        .all(|t| tag(t, "p").is_some_and(|p| p.is_empty()))
    {
        return err(format!(
            "{name} revokes the key (empty p=): every signature fails"
        ))
        .publish(wanted);
    }
    err(format!(
        "{name} publishes a different key from the one in {} (key mismatch): every signature fails",
        path.display()
    ))
    .publish(wanted)
}

/// The DMARC record that applies to `domain`: its own, or its organizational domain's
/// (RFC 7489 §6.6.3). Returns where it was found and its tags.
async fn dmarc_record(
    dns: &Dns,
    domain: &str,
) -> Result<Option<(String, String, Vec<(String, String)>)>, String> {
    let org = organizational_domain(domain);
    let mut names = vec![domain.to_string()];
    if org != domain {
        names.push(org);
    }
    for at in names {
        let name = format!("_dmarc.{at}");
        let txt = dns.txt(&name).await.map_err(|e| format!("{e:#}"))?;
        let found: Vec<&String> = txt
            .iter()
            .filter(|t| {
                t.trim_start()
                    .get(..8)
                    .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
            })
            .collect();
        match found.as_slice() {
            [] => continue,
            [one] => return Ok(Some((at, one.to_string(), dkim_key::tags(one)))),
            _ => {
                return Err(format!(
                    "{name} has {} DMARC records: receivers then apply none",
                    found.len()
                ))
            }
        }
    }
    Ok(None)
}

async fn dmarc_findings(config: &Config, dns: &Dns) -> Vec<Verdict> {
    let from = config.from_domain();
    let org = organizational_domain(&from);
    let fresh = |policy: &str| {
        txt_record(
            &format!("_dmarc.{org}"),
            &format!("v=DMARC1; p={policy}; rua=mailto:postmaster@{org}"),
        )
    };
    let err = |message: String| Verdict::new(Check::Dmarc, Status::Error, message);
    let (at, text, tags) = match dmarc_record(dns, &from).await {
        Err(e) => return vec![err(e).publish(fresh("none"))],
        Ok(None) => {
            return vec![err(format!(
                "neither _dmarc.{from} nor _dmarc.{org} has a DMARC record: Gmail and Yahoo require one from bulk senders"
            ))
            .publish(fresh("none"))]
        }
        Ok(Some(found)) => found,
    };
    let tag = |name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    // A subdomain's mail follows `sp=` of the organizational domain's record.
    let policy_tag = if at != from && tag("sp").is_some() {
        "sp"
    } else {
        "p"
    };
    let policy = tag(policy_tag);
    let name = format!("_dmarc.{at}");
    let mut findings = Vec::new();
    match policy.as_deref() {
        Some("reject" | "quarantine") => {}
        Some("none") => {
            // The same record with the policy that applies raised to quarantine.
            let stricter: Vec<String> = tags
                .iter()
                .map(|(k, v)| match k.as_str() {
                    k if k == policy_tag => format!("{k}=quarantine"),
                    _ => format!("{k}={v}"),
                })
                .collect();
            let f = Verdict::new(
                Check::Dmarc,
                Status::Warning,
                format!(
                    "{name}: \"{text}\": policy `none` meets the bulk-sender rule but protects no one from forged mail as {from}: once the reports look clean, move to quarantine"
                ),
            )
            .publish(txt_record(&name, &stricter.join("; ")));
            findings.push(f);
        }
        _ => {
            findings.push(
                err(format!(
                    "{name}: \"{text}\" has no valid policy (p=none, quarantine or reject): receivers ignore it"
                ))
                .publish(fresh("none")),
            );
        }
    }
    let strict = |t: &str| tag(t).as_deref() == Some("s");
    let aligned = |strict: bool, a: &str| {
        if strict {
            strict_aligned(a, &from)
        } else {
            relaxed_aligned(a, &from)
        }
    };
    let rp = return_path_domain(config);
    let spf_aligned = aligned(strict("aspf"), &rp);
    // One aligned signature is enough for DMARC.
    let dkim_aligned = config.dkim.as_ref().map(|d| {
        let domains: Vec<String> = dkim_keys(d)
            .into_iter()
            .map(|(domain, ..)| domain)
            .collect();
        let any = domains
            .iter()
            .any(|domain| aligned(strict("adkim"), domain));
        (domains.join(", "), any)
    });
    let mode = |t: &str| if strict(t) { "strict" } else { "relaxed" };
    match (&dkim_aligned, spf_aligned) {
        (Some((_, true)), true) => findings.push(Verdict::new(
            Check::Dmarc,
            Status::Ok,
            format!("{name}: \"{text}\": DKIM ({}) and SPF ({}) are aligned with From {from}", mode("adkim"), mode("aspf")),
        )),
        // Common with a provider's bounce domain; DKIM survives forwarding.
        (Some((_, true)), false) => findings.push(Verdict::new(
            Check::Dmarc,
            Status::Ok,
            format!("{name}: \"{text}\": DKIM ({}) is aligned with From {from}; SPF is not (return path {rp}), so DMARC passes on DKIM", mode("adkim")),
        )),
        (Some((d, false)), _) => {
            let status = if spf_aligned { Status::Warning } else { Status::Error };
            let rests = if spf_aligned {
                "DMARC rests on SPF alone, which forwarding breaks"
            } else {
                "and SPF is not aligned either: DMARC fails for every message"
            };
            let mut f = Verdict::new(
                Check::Dmarc,
                status,
                format!(
                    "{name}: the DKIM domain {d} is not aligned with From {from} ({} alignment): {rests}; sign with a key of {from} (set [dkim] domain = \"{from}\" and publish the key there)",
                    mode("adkim")
                ),
            );
            if let Some(dkim) = &config.dkim {
                let key = std::fs::read_to_string(config.resolve(&dkim.key_file))
                    .ok()
                    .and_then(|pem| PublicKey::from_private_pem(&pem).ok());
                if let Some(key) = key {
                    f = f.publish(txt_record(
                        &format!("{}._domainkey.{from}", dkim.selector),
                        &key.record_text(),
                    ));
                }
            }
            findings.push(f);
        }
        (None, true) => findings.push(Verdict::new(
            Check::Dmarc,
            Status::Warning,
            format!("{name}: \"{text}\": only SPF ({}) aligns with From {from}, and no [dkim]: DMARC rests on SPF alone, which forwarding breaks", mode("aspf")),
        )),
        (None, false) => findings.push(err(format!(
            "{name}: the return-path domain {rp} is not aligned with From {from} ({} alignment) and no DKIM signature aligns: DMARC fails for every message",
            mode("aspf")
        ))),
    }
    findings
}

async fn mx_finding(config: &Config, dns: &Dns) -> Verdict {
    let domain = return_path_domain(config);
    let wanted = format!("{domain}. {TTL} IN MX 10 mail.{domain}.");
    let err = |message: String| Verdict::new(Check::Mx, Status::Error, message);
    let mx = match dns.mx(&domain).await {
        Ok(mx) => mx,
        Err(e) => return lookup_failed(Check::Mx, &e),
    };
    if mx.is_empty() {
        return match dns.addresses(&domain).await {
            Ok(a) if !a.is_empty() => Verdict::new(
                Check::Mx,
                Status::Warning,
                format!("{domain} (the return-path domain) has no MX record; bounces go to its address record instead: publish an MX for the host that receives its mail (mail.{domain} here is an example)"),
            )
            .publish(wanted),
            Ok(_) => err(format!(
                "{domain} (the return-path domain) has no MX record and no address: bounces cannot be delivered, and receivers refuse mail from a domain that cannot receive any; publish an MX for the host that receives its mail (mail.{domain} here is an example)"
            ))
            .publish(wanted),
            Err(e) => lookup_failed(Check::Mx, &e),
        };
    }
    if mx.iter().all(|(_, host)| host.is_empty()) {
        return err(format!(
            "{domain} publishes a null MX (\"0 .\"): it receives no mail, so bounces are lost and receivers refuse its mail"
        ))
        .publish(wanted);
    }
    let mut reachable = Vec::new();
    for (pref, host) in mx.iter().filter(|(_, h)| !h.is_empty()) {
        match dns.addresses(host).await {
            Ok(a) if !a.is_empty() => reachable.push(format!("{pref} {host}")),
            Ok(_) => {}
            Err(e) => return lookup_failed(Check::Mx, &e),
        }
    }
    if reachable.is_empty() {
        let hosts: Vec<&str> = mx.iter().map(|(_, h)| h.as_str()).collect();
        return err(format!(
            "the MX hosts of {domain} ({}) have no address: bounces cannot be delivered",
            hosts.join(", ")
        ));
    }
    Verdict::new(
        Check::Mx,
        Status::Ok,
        format!(
            "{domain} receives mail (bounces) at MX {}",
            reachable.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_records_are_split_into_strings() {
        let text = "p=".to_string() + &"A".repeat(300);
        let line = txt_record("s._domainkey.example.org", &text);
        assert!(line.starts_with("s._domainkey.example.org. 3600 IN TXT \"p=AAA"));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), text);
        assert_eq!(txt_record("x.org", "a\"b"), "x.org. 3600 IN TXT \"a\\\"b\"");
    }

    #[test]
    fn public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(&ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public(&"192.0.2.10".parse().unwrap()));
        assert!(is_public(&"2001:db8::25".parse().unwrap()));
    }
}
