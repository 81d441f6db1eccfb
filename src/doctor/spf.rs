//! SPF (RFC 7208): parse a record, count its DNS lookups, and evaluate it for the
//! relay's address, far enough to tell whether brief's mail can pass at all. Macros
//! (`%{...}`) are not expanded: a term that uses one is reported as not checkable.

use super::dns::Dns;
use anyhow::Result;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// RFC 7208 §4.6.4: more DNS-querying terms than this is a permanent error.
pub(super) const MAX_LOOKUPS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mechanism {
    All,
    Include(String),
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ip(IpAddr, u8),
    Exists(String),
    Ptr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub directives: Vec<(Qualifier, Mechanism)>,
    pub redirect: Option<String>,
}

/// The outcome of `check_host()` for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    /// No SPF record at a domain the evaluation needed.
    None,
    PermError(String),
    TempError(String),
}

/// The one `v=spf1` record among a name's TXT records: `Ok(None)` when there is none,
/// an error text when there are several.
pub(super) fn select(txt: &[String]) -> Result<Option<&str>, String> {
    let spf: Vec<&String> = txt.iter().filter(|t| is_spf(t)).collect();
    match spf.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.as_str())),
        _ => Err(format!(
            "{} SPF records are published; receivers treat more than one as a permanent error",
            spf.len()
        )),
    }
}

fn is_spf(txt: &str) -> bool {
    let t = txt.trim_start();
    t.len() >= 6
        && t[..6].eq_ignore_ascii_case("v=spf1")
        && t[6..].chars().next().is_none_or(|c| c == ' ')
}

pub(super) fn parse(text: &str) -> Result<Record, String> {
    let mut terms = text.split_ascii_whitespace();
    if !terms
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
    {
        return Err("the record does not start with `v=spf1`".into());
    }
    let mut record = Record {
        directives: Vec::new(),
        redirect: None,
    };
    for term in terms {
        let lower = term.to_ascii_lowercase();
        if let Some((name, value)) = lower.split_once('=') {
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !name.contains(':')
            {
                if name == "redirect" {
                    record.redirect = Some(value.to_string());
                }
                continue; // exp= and unknown modifiers do not change the result
            }
        }
        let (qualifier, rest) = match lower.chars().next() {
            Some('+') => (Qualifier::Pass, &lower[1..]),
            Some('-') => (Qualifier::Fail, &lower[1..]),
            Some('~') => (Qualifier::SoftFail, &lower[1..]),
            Some('?') => (Qualifier::Neutral, &lower[1..]),
            _ => (Qualifier::Pass, lower.as_str()),
        };
        let (name, arg) = match rest.find([':', '/']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let bad = || format!("`{term}` is not a valid SPF term");
        let mechanism = match name {
            "all" if arg.is_empty() => Mechanism::All,
            "include" => Mechanism::Include(domain_arg(arg).ok_or_else(bad)?),
            "exists" => Mechanism::Exists(domain_arg(arg).ok_or_else(bad)?),
            "a" | "mx" => {
                let (domain, cidr) = match arg.find('/') {
                    Some(i) => (&arg[..i], &arg[i..]),
                    None => (arg, ""),
                };
                let domain = match domain {
                    "" => None,
                    d => Some(domain_arg(d).ok_or_else(bad)?),
                };
                let (v4, v6) = dual_cidr(cidr).ok_or_else(bad)?;
                if name == "a" {
                    Mechanism::A(domain, v4, v6)
                } else {
                    Mechanism::Mx(domain, v4, v6)
                }
            }
            "ip4" | "ip6" => {
                let value = arg.strip_prefix(':').ok_or_else(bad)?;
                let (ip, len) = match value.split_once('/') {
                    Some((ip, len)) => (ip, Some(len)),
                    None => (value, None),
                };
                let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if (name == "ip4") != ip.is_ipv4() {
                    return Err(bad());
                }
                let len = match len {
                    Some(l) => l.parse::<u8>().ok().filter(|&l| l <= max).ok_or_else(bad)?,
                    None => max,
                };
                Mechanism::Ip(ip, len)
            }
            "ptr" => Mechanism::Ptr,
            _ => return Err(bad()),
        };
        record.directives.push((qualifier, mechanism));
    }
    Ok(record)
}

fn domain_arg(arg: &str) -> Option<String> {
    let d = arg.strip_prefix(':')?;
    (!d.is_empty() && !d.contains('/')).then(|| d.trim_end_matches('.').to_string())
}

/// `/24//64`, `/24`, `//64` or nothing.
fn dual_cidr(s: &str) -> Option<(u8, u8)> {
    let (v4, v6) = match s.split_once("//") {
        Some((v4, v6)) => (v4, Some(v6)),
        None => (s, None),
    };
    let v4 = match v4.strip_prefix('/') {
        Some(l) => l.parse().ok().filter(|&l| l <= 32)?,
        None if v4.is_empty() => 32,
        None => return None,
    };
    let v6 = match v6 {
        Some(l) => l.parse().ok().filter(|&l| l <= 128)?,
        None => 128,
    };
    Some((v4, v6))
}

impl Record {
    /// `+all` (or a bare `all`): anyone may send as the domain.
    pub(super) fn allows_everyone(&self) -> bool {
        self.directives
            .iter()
            .any(|(q, m)| *m == Mechanism::All && *q == Qualifier::Pass)
    }

    /// No mechanism but `all`, and no redirect: the record authorizes nobody.
    pub(super) fn authorizes_nobody(&self) -> bool {
        self.redirect.is_none()
            && self
                .directives
                .iter()
                .all(|(q, m)| *m == Mechanism::All && *q != Qualifier::Pass)
    }

    /// The record's text with `term` added before `all` (or at the end).
    pub(super) fn with_term(text: &str, term: &str) -> String {
        let mut terms: Vec<&str> = text.split_ascii_whitespace().collect();
        let at = terms
            .iter()
            .position(|t| {
                let t = t.to_ascii_lowercase();
                t.trim_start_matches(['+', '-', '~', '?']) == "all" || t.starts_with("redirect=")
            })
            .unwrap_or(terms.len());
        terms.insert(at, term);
        terms.join(" ")
    }
}

/// Counts the DNS-querying terms of `domain`'s record and of every record it includes
/// or redirects to, as receivers do. `Err` when a record in the chain is broken.
pub(super) async fn count_lookups(dns: &Dns, record: &Record) -> Result<usize, String> {
    let mut count = 0;
    count_in(dns, record, &mut count, 0).await?;
    Ok(count)
}

fn count_in<'a>(
    dns: &'a Dns,
    record: &'a Record,
    count: &'a mut usize,
    depth: usize,
) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
    Box::pin(async move {
        let mut nested: Vec<&str> = Vec::new();
        for (_, m) in &record.directives {
            match m {
                Mechanism::Include(d) => {
                    *count += 1;
                    nested.push(d);
                }
                Mechanism::A(..) | Mechanism::Mx(..) | Mechanism::Exists(_) | Mechanism::Ptr => {
                    *count += 1
                }
                Mechanism::All | Mechanism::Ip(..) => {}
            }
        }
        if let Some(d) = &record.redirect {
            *count += 1;
            nested.push(d);
        }
        // Past the limit the exact number no longer matters.
        if depth > MAX_LOOKUPS || *count > MAX_LOOKUPS {
            return Ok(());
        }
        for d in nested {
            if d.contains('%') {
                continue;
            }
            let txt = dns.txt(d).await.map_err(|e| format!("{e:#}"))?;
            let Some(text) = select(&txt).map_err(|e| format!("{d}: {e}"))? else {
                return Err(format!("{d} (included) has no SPF record"));
            };
            let inner = parse(text).map_err(|e| format!("{d}: {e}"))?;
            count_in(dns, &inner, count, depth + 1).await?;
        }
        Ok(())
    })
}

/// `check_host()` of RFC 7208 for `ip` sending as `domain`, whose record is `record`.
pub(super) async fn check_host(dns: &Dns, ip: IpAddr, domain: &str, record: &Record) -> Verdict {
    let mut lookups = 0;
    evaluate(dns, ip, domain, record, &mut lookups).await
}

fn evaluate<'a>(
    dns: &'a Dns,
    ip: IpAddr,
    domain: &'a str,
    record: &'a Record,
    lookups: &'a mut usize,
) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
    Box::pin(async move {
        for (qualifier, mechanism) in &record.directives {
            let matched = match matches(dns, ip, domain, mechanism, lookups).await {
                Ok(m) => m,
                Err(v) => return v,
            };
            if matched {
                return match qualifier {
                    Qualifier::Pass => Verdict::Pass,
                    Qualifier::Fail => Verdict::Fail,
                    Qualifier::SoftFail => Verdict::SoftFail,
                    Qualifier::Neutral => Verdict::Neutral,
                };
            }
        }
        match &record.redirect {
            Some(target) => match nested(dns, ip, target, lookups).await {
                Verdict::None => Verdict::PermError(format!("redirect={target} has no SPF record")),
                v => v,
            },
            None => Verdict::Neutral,
        }
    })
}

/// Whether `mechanism` matches `ip`; `Err` with the verdict that ends the evaluation.
async fn matches(
    dns: &Dns,
    ip: IpAddr,
    domain: &str,
    mechanism: &Mechanism,
    lookups: &mut usize,
) -> Result<bool, Verdict> {
    let mut count = || {
        *lookups += 1;
        if *lookups > MAX_LOOKUPS {
            Err(Verdict::PermError(format!(
                "more than {MAX_LOOKUPS} DNS lookups"
            )))
        } else {
            Ok(())
        }
    };
    let macro_used = |d: &str| {
        if d.contains('%') {
            Err(Verdict::TempError(format!(
                "`{d}` uses an SPF macro, which brief doctor does not expand"
            )))
        } else {
            Ok(())
        }
    };
    let temp = |e: anyhow::Error| Verdict::TempError(format!("{e:#}"));
    match mechanism {
        Mechanism::All => Ok(true),
        Mechanism::Ip(net, len) => Ok(in_network(ip, *net, *len)),
        Mechanism::Include(d) => {
            count()?;
            macro_used(d)?;
            match nested(dns, ip, d, lookups).await {
                Verdict::Pass => Ok(true),
                Verdict::Fail | Verdict::SoftFail | Verdict::Neutral => Ok(false),
                Verdict::None => Err(Verdict::PermError(format!("include:{d} has no SPF record"))),
                v => Err(v),
            }
        }
        Mechanism::A(d, v4, v6) => {
            count()?;
            let target = d.as_deref().unwrap_or(domain);
            macro_used(target)?;
            let addrs = dns.addresses(target).await.map_err(temp)?;
            Ok(addrs.iter().any(|a| in_dual(ip, *a, *v4, *v6)))
        }
        Mechanism::Mx(d, v4, v6) => {
            count()?;
            let target = d.as_deref().unwrap_or(domain);
            macro_used(target)?;
            for (_, host) in dns.mx(target).await.map_err(temp)?.iter().take(10) {
                let addrs = dns.addresses(host).await.map_err(temp)?;
                if addrs.iter().any(|a| in_dual(ip, *a, *v4, *v6)) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Mechanism::Exists(d) => {
            count()?;
            macro_used(d)?;
            Ok(!dns.addresses(d).await.map_err(temp)?.is_empty())
        }
        // Deprecated (RFC 7208 §5.5) and slow: assume it does not match.
        Mechanism::Ptr => {
            count()?;
            Ok(false)
        }
    }
}

async fn nested(dns: &Dns, ip: IpAddr, domain: &str, lookups: &mut usize) -> Verdict {
    let txt = match dns.txt(domain).await {
        Ok(t) => t,
        Err(e) => return Verdict::TempError(format!("{e:#}")),
    };
    match select(&txt) {
        Ok(None) => Verdict::None,
        Err(e) => Verdict::PermError(format!("{domain}: {e}")),
        Ok(Some(text)) => match parse(text) {
            Ok(r) => evaluate(dns, ip, domain, &r, lookups).await,
            Err(e) => Verdict::PermError(format!("{domain}: {e}")),
        },
    }
}

fn in_dual(ip: IpAddr, addr: IpAddr, v4: u8, v6: u8) -> bool {
    in_network(ip, addr, if addr.is_ipv4() { v4 } else { v6 })
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_terms() {
        let r = parse("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.org/28 include:_spf.example.net ~all").unwrap();
        assert_eq!(r.directives.len(), 6);
        assert_eq!(
            r.directives[0],
            (
                Qualifier::Pass,
                Mechanism::Ip("192.0.2.0".parse().unwrap(), 24)
            )
        );
        assert_eq!(
            r.directives[2],
            (Qualifier::Pass, Mechanism::A(None, 32, 128))
        );
        assert_eq!(
            r.directives[3],
            (
                Qualifier::Pass,
                Mechanism::Mx(Some("mail.example.org".into()), 28, 128)
            )
        );
        assert_eq!(r.directives[5], (Qualifier::SoftFail, Mechanism::All));
        assert!(parse("v=spf1 ip4:300.1.1.1 -all").is_err());
        assert!(parse("v=spf1 bogus -all").is_err());
        assert!(parse("spf1 -all").is_err());
        let r = parse("v=spf1 redirect=_spf.example.org exp=x.example.org").unwrap();
        assert_eq!(r.redirect.as_deref(), Some("_spf.example.org"));
    }

    #[test]
    fn shapes_that_cannot_pass() {
        assert!(parse("v=spf1 -all").unwrap().authorizes_nobody());
        assert!(parse("v=spf1 +all").unwrap().allows_everyone());
        assert!(parse("v=spf1 all").unwrap().allows_everyone());
        assert!(!parse("v=spf1 a -all").unwrap().authorizes_nobody());
    }

    #[test]
    fn one_record_and_networks() {
        let txt = vec![
            "google-site-verification=x".to_string(),
            "v=spf1 -all".into(),
        ];
        assert_eq!(select(&txt), Ok(Some("v=spf1 -all")));
        assert!(select(&["v=spf1 a".into(), "v=spf1 mx".into()]).is_err());
        assert_eq!(select(&["v=spf10".into()]), Ok(None));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("192.0.2.77"), ip("192.0.2.0"), 24));
        assert!(!in_network(ip("192.0.3.1"), ip("192.0.2.0"), 24));
        assert!(in_network(ip("10.1.2.3"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("2001:db8::1"), ip("2001:db8::"), 32));
        assert!(!in_network(ip("192.0.2.1"), ip("2001:db8::"), 0));
    }

    #[test]
    fn adds_a_term_before_all() {
        assert_eq!(
            Record::with_term("v=spf1 mx -all", "ip4:192.0.2.10"),
            "v=spf1 mx ip4:192.0.2.10 -all"
        );
        assert_eq!(
            Record::with_term("v=spf1 mx", "ip4:192.0.2.10"),
            "v=spf1 mx ip4:192.0.2.10"
        );
    }
}
