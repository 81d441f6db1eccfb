//! The Atom feed (RFC 4287): one entry per edition, absolute links from `base_url`.

use super::Entry;
use crate::config::Config;
use crate::token;
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write;

/// The feed of `entries` (newest first). `now` dates an empty feed.
pub(super) fn atom(config: &Config, entries: &[Entry], now: DateTime<Utc>) -> String {
    let n = &config.newsletter;
    let base = n.base_url.trim_end_matches('/');
    let updated = entries.iter().map(Entry::updated).max().unwrap_or(now);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{lang}\">\n\
         \x20 <title>{name}</title>\n\
         \x20 <id>{base}/</id>\n\
         \x20 <link rel=\"self\" type=\"application/atom+xml\" href=\"{base}/feed.xml\"/>\n\
         \x20 <link rel=\"alternate\" type=\"text/html\" href=\"{base}/\"/>\n\
         \x20 <updated>{updated}</updated>\n\
         \x20 <author><name>{name}</name></author>\n\
         \x20 <generator>brief</generator>\n",
        lang = xml(&n.language),
        name = xml(&n.name),
        base = xml(base),
        updated = time(updated),
    );
    for e in entries {
        let ed = &e.edition;
        let url = xml(&token::web_url(&n.base_url, &ed.slug));
        let when = time(e.published());
        let _ = write!(
            out,
            "  <entry>\n\
             \x20   <title>{title}</title>\n\
             \x20   <id>{url}</id>\n\
             \x20   <link rel=\"alternate\" type=\"text/html\" href=\"{url}\"/>\n\
             \x20   <published>{when}</published>\n\
             \x20   <updated>{updated}</updated>\n",
            title = xml(&ed.title),
            updated = time(e.updated()),
        );
        if let Some(kicker) = &ed.kicker {
            let _ = writeln!(out, "    <category term=\"{}\"/>", xml(kicker));
        }
        // A correction leads the summary, so feed readers show what changed.
        let mut summary = String::new();
        for c in e.corrections.iter().rev() {
            let note = crate::compose::markdown::block(&c.note).text;
            summary.push_str(&format!(
                "Correction ({}): {} ",
                c.at.format("%Y-%m-%d"),
                note.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        summary.push_str(&e.preheader);
        let _ = write!(
            out,
            "    <summary>{}</summary>\n  </entry>\n",
            xml(&summary)
        );
    }
    out.push_str("</feed>\n");
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Escapes text for XML content and attributes; drops the characters XML 1.0 cannot
/// carry at all (control characters other than tab, newline and carriage return).
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn escapes_markup_and_drops_what_xml_cannot_hold() {
        assert_eq!(xml("a<b>&\"c'\u{1}\td"), "a&lt;b&gt;&amp;&quot;c&apos;\td");
    }
}
