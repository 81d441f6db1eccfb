//! Opt-in click counting for sponsor reports (`[tracking]`, docs/tracking.md).
//!
//! Compose rewrites the links of the tracked sections once per edition into
//! `<base_url>/c/<token>` ([`Rewriter`]); a send records the edition's link table in the
//! store, and `brief serve` redirects a token found there to its URL and counts the
//! click ([`recorder`]). Nothing in a link or a click names a subscriber: every reader
//! gets the same links. [`filter`] tells machine clicks from readers', [`report`] turns
//! the counts into `brief report sponsors`.

pub mod filter;
pub mod recorder;
pub mod report;

use crate::config::{Config, TrackedSection};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// One tracked link of an edition: what its token redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedLink {
    pub token: String,
    /// Order in the edition (0 first), for the report.
    pub position: usize,
    pub section: TrackedSection,
    /// The destination, with UTM parameters when they apply.
    pub url: String,
}

impl TrackedSection {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackedSection::Sponsor => "sponsor",
            TrackedSection::Essay => "essay",
            TrackedSection::Roundup => "roundup",
            TrackedSection::Agenda => "agenda",
            TrackedSection::ReadMore => "read_more",
            TrackedSection::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<TrackedSection> {
        [
            TrackedSection::Sponsor,
            TrackedSection::Essay,
            TrackedSection::Roundup,
            TrackedSection::Agenda,
            TrackedSection::ReadMore,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// Rewrites the links of one edition as compose meets them (the HTML and the text part
/// are rendered from the same values, so both carry the same tracked links) and keeps
/// the table of what each token stands for.
pub struct Rewriter {
    tracking: crate::config::Tracking,
    click_base: String,
    list_id: String,
    slug: String,
    links: RefCell<Vec<TrackedLink>>,
}

impl Rewriter {
    pub fn new(config: &Config, slug: &str) -> Rewriter {
        Rewriter {
            tracking: config.tracking.clone(),
            click_base: format!("{}/c/", config.newsletter.base_url.trim_end_matches('/')),
            list_id: config.newsletter.list_id.clone(),
            slug: slug.to_string(),
            links: RefCell::new(Vec::new()),
        }
    }

    /// Whether this rewriter can change any link (tracking on, or UTM parameters set).
    pub fn is_active(&self) -> bool {
        self.tracking.changes_links()
    }

    /// The URL to put in the edition for `url` found in `section`. Only http(s) links
    /// are rewritten (a `mailto:` cannot be redirected). The same URL in the same
    /// section gets the same token.
    pub fn link(&self, section: TrackedSection, url: &str) -> String {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return url.to_string();
        }
        let dest = if section == TrackedSection::Sponsor {
            self.with_utm(url)
        } else {
            url.to_string()
        };
        if !self.tracking.tracks(section) {
            return dest;
        }
        let mut links = self.links.borrow_mut();
        let token = match links.iter().find(|l| l.section == section && l.url == dest) {
            Some(l) => l.token.clone(),
            None => {
                let position = links.len();
                let token = token(&self.list_id, &self.slug, position, section, &dest);
                links.push(TrackedLink {
                    token: token.clone(),
                    position,
                    section,
                    url: dest,
                });
                token
            }
        };
        format!("{}{token}", self.click_base)
    }

    /// The links rewritten so far, in order.
    pub fn into_links(self) -> Vec<TrackedLink> {
        self.links.into_inner()
    }

    fn with_utm(&self, url: &str) -> String {
        let Some(source) = &self.tracking.utm_source else {
            return url.to_string();
        };
        let campaign = match &self.tracking.utm_campaign {
            Some(c) => c.replace("{edition}", &self.slug),
            None => self.slug.clone(),
        };
        add_query(
            url,
            &[
                ("utm_source", source),
                ("utm_medium", &self.tracking.utm_medium),
                ("utm_campaign", &campaign),
            ],
        )
    }
}

/// A link token: 128 bits of SHA-256 over the newsletter, the edition, the link's place
/// and its destination. It is not a secret and says nothing about the reader; what
/// stops a forged token from redirecting anywhere is that only tokens recorded in the
/// store redirect (docs/tracking.md).
fn token(list_id: &str, slug: &str, position: usize, section: TrackedSection, url: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        "brief/link/v1",
        list_id,
        slug,
        &position.to_string(),
        section.as_str(),
        url,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

/// Whether `s` has the shape of a link token (so anything else is refused unread).
pub fn looks_like_token(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `url` with `params` added to its query (before any `#fragment`); a parameter the
/// URL already has is left as the sponsor wrote it.
fn add_query(url: &str, params: &[(&str, &str)]) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let existing: Vec<String> = base
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .map(|kv| kv.split('=').next().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut added = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in params {
        if !existing.iter().any(|e| e == k) {
            added.append_pair(k, v);
            any = true;
        }
    }
    if !any {
        return url.to_string();
    }
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with(['?', '&']) {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{}{fragment}", added.finish())
}

/// The host of a URL (the sponsor's name in reports when the edition gives none).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit('@').next().unwrap_or(host);
    host.strip_prefix("www.").unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            std::path::Path::new("brief.toml"),
            &format!(
                "[newsletter]\nname = \"N\"\nfrom = \"n@example.org\"\nlist_id = \"n.example.org\"\nbase_url = \"https://news.example.org/brief/\"\npostal_address = \"1 Street\"\n{extra}"
            ),
        )
        .unwrap()
    }

    #[test]
    fn off_by_default_changes_nothing() {
        let r = Rewriter::new(&config(""), "e1");
        assert!(!r.is_active());
        assert_eq!(
            r.link(TrackedSection::Sponsor, "https://acme.example/x"),
            "https://acme.example/x"
        );
        assert!(r.into_links().is_empty());
    }

    #[test]
    fn sponsor_links_tracked_with_utm_and_deduplicated() {
        let c = config("[tracking]\nenabled = true\nutm_source = \"the-brief\"\n");
        let r = Rewriter::new(&c, "e1");
        let a = r.link(TrackedSection::Sponsor, "https://acme.example/x?a=1#top");
        let b = r.link(TrackedSection::Sponsor, "https://acme.example/x?a=1#top");
        let essay = r.link(TrackedSection::Essay, "https://other.example/");
        let mail = r.link(TrackedSection::Sponsor, "mailto:sales@acme.example");
        assert_eq!(a, b);
        assert!(a.starts_with("https://news.example.org/brief/c/"), "{a}");
        assert!(looks_like_token(a.rsplit('/').next().unwrap()));
        assert_eq!(essay, "https://other.example/");
        assert_eq!(mail, "mailto:sales@acme.example");
        let links = r.into_links();
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].url,
            "https://acme.example/x?a=1&utm_source=the-brief&utm_medium=email&utm_campaign=e1#top"
        );
    }

    #[test]
    fn utm_keeps_the_sponsors_own_parameters() {
        assert_eq!(
            add_query(
                "https://a.example/?utm_source=own",
                &[("utm_source", "x"), ("utm_medium", "email")]
            ),
            "https://a.example/?utm_source=own&utm_medium=email"
        );
        assert_eq!(
            add_query("https://a.example", &[("k", "a b")]),
            "https://a.example?k=a+b"
        );
    }

    #[test]
    fn tokens_differ_by_edition_and_place() {
        let s = TrackedSection::Sponsor;
        let t = token("l", "e1", 0, s, "https://a.example/");
        assert_ne!(t, token("l", "e2", 0, s, "https://a.example/"));
        assert_ne!(t, token("l", "e1", 1, s, "https://a.example/"));
        assert_eq!(t, token("l", "e1", 0, s, "https://a.example/"));
    }

    proptest::proptest! {
        /// Whatever an edition holds, rewriting neither panics nor loses the URL.
        #[test]
        fn any_url_is_rewritten_without_panic(url in "\\PC{0,80}", params in "\\PC{0,20}") {
            let c = config("[tracking]\nenabled = true\nsections = [\"all\"]\nutm_source = \"s\"\n");
            let r = Rewriter::new(&c, "e1");
            let out = r.link(TrackedSection::Sponsor, &url);
            let _ = host_of(&url);
            let _ = add_query(&url, &[("k", params.as_str())]);
            let links = r.into_links();
            proptest::prop_assert!(links.iter().all(|l| l.url.starts_with(url.split('#').next().unwrap_or(""))));
            proptest::prop_assert!(out.starts_with("https://news.example.org/brief/c/") || out == url);
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://www.acme.example/x?y"), "acme.example");
        assert_eq!(host_of("http://acme.example"), "acme.example");
    }
}
