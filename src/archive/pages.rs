//! The archive's own HTML: the index page, and the links added to each edition page's
//! head. Plain HTML and inline CSS: no script, nothing loaded from elsewhere.

use super::{esc, subscribe_url, Entry};
use crate::config::Config;
use crate::edition::Edition;
use crate::token;
use std::fmt::Write;

/// The index: every edition, newest first, with its kicker, date and preheader.
pub(super) fn index(config: &Config, entries: &[Entry]) -> String {
    let n = &config.newsletter;
    let name = esc(&n.name);
    let mut list = String::new();
    for e in entries {
        let ed = &e.edition;
        let kicker = ed.kicker.as_deref().map_or(String::new(), |k| {
            format!("<p class=\"kicker\">{}</p>\n      ", esc(k))
        });
        let _ = write!(
            list,
            "    <li>\n      {kicker}<h2><a href=\"{slug}/\">{title}</a></h2>\n      \
             <p class=\"date\"><time datetime=\"{iso}\">{long}</time></p>\n      \
             <p class=\"preheader\">{pre}</p>\n    </li>\n",
            slug = esc(&ed.slug),
            title = esc(&ed.title),
            iso = ed.date.format("%Y-%m-%d"),
            long = ed.date.format("%A, %-d %B %Y"),
            pre = esc(&e.preheader),
        );
    }
    if entries.is_empty() {
        list.push_str("    <li><p>No editions yet.</p></li>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>{name}: all editions</title>
<link rel="alternate" type="application/atom+xml" title="{name}" href="feed.xml" />
<style>
  body {{ margin: 0; background: #f1eee8; color: #1f2328; font-family: Georgia, 'Times New Roman', Times, serif; }}
  header, main, footer {{ max-width: 640px; margin: 0 auto; padding: 0 20px; }}
  header {{ padding-top: 28px; }}
  h1 {{ font-family: Helvetica, Arial, sans-serif; font-size: 18px; letter-spacing: 2px; text-transform: uppercase; }}
  ol {{ list-style: none; margin: 0; padding: 0; }}
  li {{ background: #ffffff; margin: 0 0 16px; padding: 18px 22px; }}
  h2 {{ font-size: 24px; line-height: 1.25; margin: 0 0 6px; }}
  h2 a {{ color: #111111; text-decoration: none; }}
  h2 a:hover {{ text-decoration: underline; }}
  .kicker {{ color: #a33a2a; font-family: Helvetica, Arial, sans-serif; font-size: 12px; font-weight: bold; letter-spacing: 2px; text-transform: uppercase; margin: 0 0 6px; }}
  .date {{ color: #5c6068; font-family: Helvetica, Arial, sans-serif; font-size: 13px; margin: 0 0 8px; }}
  .preheader {{ margin: 0; line-height: 1.5; }}
  footer {{ color: #5c6068; font-family: Helvetica, Arial, sans-serif; font-size: 12px; padding-bottom: 28px; }}
  a {{ color: #1f5fa8; }}
</style>
</head>
<body>
<header>
  <h1>{name}</h1>
  <p>Every edition, newest first. <a href="{subscribe}">Subscribe</a> to get the next one by email, or follow the <a href="feed.xml">Atom feed</a>.</p>
</header>
<main>
  <ol>
{list}  </ol>
</main>
<footer>
  <p>{postal}</p>
</footer>
</body>
</html>
"#,
        lang = esc(&n.language),
        subscribe = esc(&subscribe_url(config)),
        postal = esc(&n.postal_address),
    )
}

/// Adds the feed and the canonical address to an edition page's `<head>`.
pub(super) fn with_head_links(config: &Config, edition: &Edition, html: &str) -> String {
    let links = format!(
        "<link rel=\"canonical\" href=\"{}\" />\n<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{}\" href=\"../feed.xml\" />\n",
        esc(&token::web_url(&config.newsletter.base_url, &edition.slug)),
        esc(&config.newsletter.name),
    );
    match html.find("</head>") {
        Some(i) => format!("{}{links}{}", &html[..i], &html[i..]),
        None => html.to_string(),
    }
}

/// Puts the corrections block at the top of an edition page's body.
pub(super) fn with_corrections(html: &str, corrections: &[crate::correct::Correction]) -> String {
    if corrections.is_empty() {
        return html.to_string();
    }
    let block = crate::correct::archive_block(corrections);
    match html
        .find("<body")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1))
    {
        Some(at) => format!("{}\n{block}{}", &html[..at], &html[at..]),
        None => format!("{block}{html}"),
    }
}
