//! What the big mailbox providers' bulk-sender rules forbid, checked offline by
//! `brief check`, and the domain arithmetic (organizational domain, alignment) that
//! `brief doctor` shares with it.

use crate::config::{Config, Transport};
use crate::diag::{Diagnostic, Severity};

/// Public suffixes of two labels under which people register domains (`example.co.uk`).
/// A short list instead of the whole Public Suffix List: brief only needs to tell
/// whether two domains of one newsletter belong together, and a newsletter's domains
/// are almost always under a one-label suffix or one of these.
const TWO_LABEL_SUFFIXES: &[&str] = &[
    "co.uk", "org.uk", "me.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "net.uk", "com.au",
    "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "net.nz", "co.jp", "ne.jp", "or.jp",
    "ac.jp", "co.kr", "or.kr", "com.br", "net.br", "org.br", "com.cn", "net.cn", "org.cn",
    "com.hk", "com.tw", "com.sg", "com.my", "co.in", "net.in", "org.in", "co.za", "org.za",
    "com.mx", "com.ar", "com.tr", "com.ua", "co.il", "org.il", "co.id", "or.id", "com.pl",
    "com.es", "com.pt", "co.at", "or.at", "com.ph", "com.vn", "co.th", "in.th",
];

/// Mailbox providers whose DMARC policy rejects or quarantines their addresses in mail
/// sent from anywhere else: a newsletter cannot use them as `From`.
const MAILBOX_PROVIDERS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "ymail.com",
    "rocketmail.com",
    "aol.com",
    "aim.com",
    "outlook.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "protonmail.ch",
    "pm.me",
    "web.de",
    "zoho.com",
    "yandex.ru",
    "yandex.com",
    "mail.ru",
    "fastmail.com",
    "orange.fr",
    "free.fr",
    "laposte.net",
];

/// Providers present under many country suffixes (`yahoo.co.uk`, `hotmail.fr`,
/// `gmx.de`): matched on the organizational domain's first label.
const MAILBOX_PROVIDER_BRANDS: &[&str] = &["yahoo", "hotmail", "live", "gmx", "outlook"];

/// The organizational domain (RFC 7489 §3.2) of `domain`, lower-cased: the registered
/// domain under its public suffix (see [`TWO_LABEL_SUFFIXES`] for the approximation).
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let keep = if labels.len() >= 3
        && TWO_LABEL_SUFFIXES.contains(&labels[labels.len() - 2..].join(".").as_str())
    {
        3
    } else {
        2
    };
    labels[labels.len().saturating_sub(keep)..].join(".")
}

/// DMARC relaxed alignment: both domains have the same organizational domain.
pub fn relaxed_aligned(a: &str, b: &str) -> bool {
    organizational_domain(a) == organizational_domain(b)
}

/// DMARC strict alignment: the same domain.
pub fn strict_aligned(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Whether `domain` belongs to a mailbox provider that forbids sending as its users
/// from elsewhere.
pub fn is_mailbox_provider(domain: &str) -> bool {
    let org = organizational_domain(domain);
    if MAILBOX_PROVIDERS.contains(&org.as_str()) {
        return true;
    }
    let first = org.split('.').next().unwrap_or("");
    // `yahoo.com`, `yahoo.co.uk`, `gmx.net`: the brand directly under a public suffix.
    MAILBOX_PROVIDER_BRANDS.contains(&first) && org.matches('.').count() <= 2 && {
        let suffix = &org[first.len() + 1..];
        !suffix.contains('.') || TWO_LABEL_SUFFIXES.contains(&suffix)
    }
}

/// The domain of brief's Message-IDs: the From domain, unless it belongs to a mailbox
/// provider (a Message-ID must not claim a domain brief does not send for); then the
/// host of `base_url`.
pub fn message_id_domain(from_domain: &str, base_url: &str) -> String {
    if !is_mailbox_provider(from_domain) {
        return from_domain.to_string();
    }
    base_url_host(base_url).unwrap_or_else(|| from_domain.to_string())
}

/// The host part of an http(s) URL.
pub fn base_url_host(base_url: &str) -> Option<String> {
    let rest = base_url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The bulk-sender rules for `brief check`. With the `smtp` transport a From address at
/// a mailbox provider and an `http://` base_url are errors; with `outbox` (nothing
/// reaches a real inbox) they are warnings and the DKIM rules are not applied.
pub fn bulk_sender_problems(config: &Config) -> Vec<Diagnostic> {
    let smtp = config.delivery.transport == Transport::Smtp;
    let severity = if smtp {
        Severity::Error
    } else {
        Severity::Warning
    };
    let source = std::fs::read_to_string(&config.path).unwrap_or_default();
    let at = |section: &str, key: &str, severity: Severity, message: String| {
        let mut d = Diagnostic::at_offset(
            &config.path,
            &source,
            key_offset(&source, section, key),
            message,
        );
        d.severity = severity;
        d
    };
    let mut problems = Vec::new();
    let from = config.from_domain();
    if is_mailbox_provider(&from) {
        problems.push(at(
            "newsletter",
            "from",
            severity,
            format!(
                "`from` is an address at {from}, a mailbox provider whose DMARC policy rejects its addresses in mail sent from elsewhere: send from a domain you control (e.g. news.yourdomain.org) and publish SPF, DKIM and DMARC for it"
            ),
        ));
    }
    if config.newsletter.base_url.starts_with("http://") {
        problems.push(at(
            "newsletter",
            "base_url",
            severity,
            "`base_url` is http://: one-click unsubscribe (RFC 8058, required by Gmail and Yahoo for bulk mail) needs an https:// URL; put `brief serve` behind an HTTPS proxy".to_string(),
        ));
    }
    if smtp {
        match &config.dkim {
            None => problems.push(at(
                "delivery",
                "transport",
                Severity::Warning,
                "no `[dkim]`: brief does not sign its messages; unless your relay signs them with a key of the From domain, Gmail and Yahoo will reject or junk bulk mail (see `brief doctor`)".to_string(),
            )),
            Some(dkim)
                if !std::iter::once(&dkim.domain)
                    .chain(dkim.keys.iter().filter_map(|k| k.domain.as_ref()))
                    .any(|d| relaxed_aligned(d, &from)) =>
            {
                problems.push(at(
                "dkim",
                "domain",
                Severity::Warning,
                format!(
                    "`[dkim] domain` {} is not aligned with the From domain {from} (not the same organizational domain): the signature does not count for DMARC",
                    dkim.domain
                ),
            ))
            }
            Some(_) => {}
        }
    }
    problems
}

/// Byte offset of `key` inside `[section]` of a TOML text (the section header, or 0,
/// when the key is not written there).
fn key_offset(source: &str, section: &str, key: &str) -> usize {
    let header = format!("[{section}]");
    let Some(start) = source
        .match_indices(&header)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || source.as_bytes()[i - 1] == b'\n')
    else {
        return 0;
    };
    let body_start = start + header.len();
    let body_end = source[body_start..]
        .find("\n[")
        .map_or(source.len(), |i| body_start + i + 1);
    let mut offset = body_start;
    for line in source[body_start..body_end].split_inclusive('\n') {
        let name = line.split('=').next().unwrap_or("").trim();
        if line.contains('=') && name == key {
            return offset + (line.len() - line.trim_start().len());
        }
        offset += line.len();
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizational_domains() {
        assert_eq!(organizational_domain("news.example.org"), "example.org");
        assert_eq!(organizational_domain("example.org"), "example.org");
        assert_eq!(organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organizational_domain("Example.CO.UK."), "example.co.uk");
        assert_eq!(organizational_domain("localhost"), "localhost");
        assert!(relaxed_aligned("mail.example.org", "news.example.org"));
        assert!(!relaxed_aligned("example.net", "example.org"));
        assert!(!strict_aligned("mail.example.org", "example.org"));
    }

    #[test]
    fn mailbox_providers() {
        for d in [
            "gmail.com",
            "googlemail.com",
            "yahoo.com",
            "yahoo.co.uk",
            "ymail.com",
            "aol.com",
            "outlook.com",
            "hotmail.com",
            "hotmail.fr",
            "live.com",
            "msn.com",
            "icloud.com",
            "me.com",
            "gmx.de",
            "gmx.net",
            "proton.me",
            "protonmail.com",
        ] {
            assert!(is_mailbox_provider(d), "{d}");
        }
        for d in [
            "news.example.org",
            "example.org",
            "live.example.org",
            "gmail.example.com",
            "yahoo.example.co.uk",
        ] {
            assert!(!is_mailbox_provider(d), "{d}");
        }
    }

    #[test]
    fn message_ids_never_use_a_provider_domain() {
        assert_eq!(
            message_id_domain("gmail.com", "https://news.example.org:8443/brief"),
            "news.example.org"
        );
        assert_eq!(
            message_id_domain("news.example.org", "https://other.example"),
            "news.example.org"
        );
    }

    #[test]
    fn keys_are_located_in_their_section() {
        let src = "[newsletter]\nname = \"x\"\nfrom = \"a@b\"\n[dkim]\ndomain = \"d\"\n";
        assert_eq!(&src[key_offset(src, "newsletter", "from")..][..4], "from");
        assert_eq!(&src[key_offset(src, "dkim", "domain")..][..6], "domain");
        assert_eq!(
            key_offset(src, "dkim", "selector"),
            src.find("[dkim]").unwrap()
        );
        assert_eq!(key_offset(src, "delivery", "transport"), 0);
    }
}
