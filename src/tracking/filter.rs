//! The machine-click filter. Mail security gateways fetch every link of a message
//! seconds after it is delivered, and mail apps prefetch; neither is a reader. A click
//! is a machine's when
//! - it is a `HEAD` request (a browser following a link sends `GET`),
//! - it says it is a prefetch (`Purpose: prefetch`, `Sec-Purpose: prefetch…`,
//!   `X-Moz: prefetch`, `X-Purpose: preview`),
//! - its user agent is empty or names a scanner, a bot or an HTTP library
//!   ([`SCANNER_AGENTS`], plus `[tracking] scanner_agents`), or
//! - it is part of a burst: one client (address and user agent) fetching
//!   `burst_links` different links of the edition within `burst_within`.
//!
//! The first three are decided when the request arrives; bursts when the counts are
//! read (a burst is only visible once its later clicks arrived). Machine clicks are
//! counted apart and reported, never dropped.

use crate::store::Click;
use hyper::header::{HeaderMap, USER_AGENT};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Why a click is a machine's.
pub const HEAD: &str = "head";
pub const PREFETCH: &str = "prefetch";
pub const SCANNER: &str = "scanner";
pub const BURST: &str = "burst";

/// User-agent substrings (lowercase) of link scanners, crawlers and HTTP libraries.
pub const SCANNER_AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
    "barracuda",
    "proofpoint",
    "mimecast",
    "messagelabs",
    "symantec",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "fortiguard",
    "sophos",
    "ironport",
    "cisco",
    "zscaler",
    "cloudmark",
    "safelinks",
    "headlesschrome",
    "phantomjs",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "facebookexternalhit",
];

/// Lowercase words in readers' user agents that contain one of [`SCANNER_AGENTS`]:
/// CUBOT is a phone maker (`Android 12; CUBOT_X50`).
const NOT_SCANNERS: &[&str] = &["cubot"];

/// What can be told from the request alone: `None` for what looks like a reader.
pub fn request_reason(
    head: bool,
    headers: &HeaderMap,
    extra_agents: &[String],
) -> Option<&'static str> {
    if head {
        return Some(HEAD);
    }
    let says_prefetch = |name: &str, word: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(word))
    };
    if says_prefetch("purpose", "prefetch")
        || says_prefetch("sec-purpose", "prefetch")
        || says_prefetch("x-moz", "prefetch")
        || says_prefetch("x-purpose", "preview")
    {
        return Some(PREFETCH);
    }
    let agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Words that contain a scanner's substring but name a reader's device.
    let agent = NOT_SCANNERS
        .iter()
        .fold(agent, |a, word| a.replace(word, " "));
    let named = SCANNER_AGENTS.iter().any(|s| agent.contains(s))
        || extra_agents
            .iter()
            .any(|s| !s.is_empty() && agent.contains(&s.to_ascii_lowercase()));
    (agent.is_empty() || named).then_some(SCANNER)
}

/// The reader-looking clicks (no reason yet) that belong to a burst: one client
/// fetching `links` or more different links within `within`.
pub fn bursts(clicks: &[Click], links: usize, within: Duration) -> HashSet<i64> {
    let mut by_client: HashMap<&str, Vec<&Click>> = HashMap::new();
    for c in clicks.iter().filter(|c| c.machine.is_none()) {
        if let Some(client) = c.client.as_deref() {
            by_client.entry(client).or_default().push(c);
        }
    }
    let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
    let mut out = HashSet::new();
    for mut list in by_client.into_values() {
        list.sort_by_key(|c| (c.at, c.id));
        let mut start = 0;
        for end in 0..list.len() {
            while list[end].at - list[start].at > within {
                start += 1;
            }
            let window = &list[start..=end];
            let distinct: BTreeSet<&str> = window.iter().map(|c| c.token.as_str()).collect();
            if distinct.len() >= links {
                out.extend(window.iter().map(|c| c.id));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const BROWSER: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15";

    #[test]
    fn request_signs() {
        let reader = headers(&[("user-agent", BROWSER)]);
        assert_eq!(request_reason(false, &reader, &[]), None);
        assert_eq!(request_reason(true, &reader, &[]), Some(HEAD));
        let prefetch = headers(&[
            ("user-agent", BROWSER),
            ("sec-purpose", "prefetch;prerender"),
        ]);
        assert_eq!(request_reason(false, &prefetch, &[]), Some(PREFETCH));
        let moz = headers(&[("user-agent", BROWSER), ("x-moz", "prefetch")]);
        assert_eq!(request_reason(false, &moz, &[]), Some(PREFETCH));
        let gateway = headers(&[("user-agent", "Mozilla/5.0 (compatible; Barracuda Sentinel)")]);
        assert_eq!(request_reason(false, &gateway, &[]), Some(SCANNER));
        assert_eq!(request_reason(false, &HeaderMap::new(), &[]), Some(SCANNER));
        let phone = headers(&[(
            "user-agent",
            "Mozilla/5.0 (Linux; Android 12; CUBOT_X50) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
        )]);
        assert_eq!(request_reason(false, &phone, &[]), None);
        let crawler = headers(&[(
            "user-agent",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        )]);
        assert_eq!(request_reason(false, &crawler, &[]), Some(SCANNER));
        let own = headers(&[("user-agent", "Mozilla/5.0 AcmeGuard/2")]);
        assert_eq!(request_reason(false, &own, &[]), None);
        assert_eq!(
            request_reason(false, &own, &["acmeguard".into()]),
            Some(SCANNER)
        );
    }

    fn click(id: i64, token: &str, secs: i64, client: &str) -> Click {
        Click {
            id,
            token: token.into(),
            at: chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            machine: None,
            client: Some(client.into()),
        }
    }

    #[test]
    fn a_client_fetching_many_links_at_once_is_a_burst() {
        let clicks = [
            // A scanner: three links within two seconds.
            click(1, "a", 0, "s"),
            click(2, "b", 1, "s"),
            click(3, "c", 2, "s"),
            // A reader: the same three links, minutes apart, and one link twice.
            click(4, "a", 0, "r"),
            click(5, "a", 3, "r"),
            click(6, "b", 300, "r"),
            click(7, "c", 900, "r"),
        ];
        let found = bursts(&clicks, 3, Duration::from_secs(10));
        assert_eq!(found, HashSet::from([1, 2, 3]));
        assert!(bursts(&clicks, 4, Duration::from_secs(10)).is_empty());
    }
}
