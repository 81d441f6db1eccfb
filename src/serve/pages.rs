//! The HTML pages of `brief serve`: short, self-contained (one inline style, allowed by
//! its hash in the Content-Security-Policy), readable on a 375 px phone, the
//! newsletter's name on each, and never a full address.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#f4f4f1;color:#1d1d1b;font:17px/1.5 -apple-system,BlinkMacSystemFont,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif}\
main{max-width:32rem;margin:0 auto;padding:2.5rem 1.25rem}\
.card{background:#fff;border:1px solid #deded8;border-radius:10px;padding:1.5rem 1.25rem}\
.name{margin:0 0 1rem;font-size:.8rem;letter-spacing:.08em;text-transform:uppercase;color:#6b6b66}\
h1{margin:0 0 .75rem;font-size:1.45rem;line-height:1.25}\
p{margin:0 0 1rem}\
.who{font-weight:600;overflow-wrap:anywhere}\
form{margin:1.25rem 0 0}\
button{display:block;width:100%;min-height:48px;padding:.75rem 1rem;border:0;border-radius:8px;background:#1d1d1b;color:#fff;font:inherit;font-weight:600;cursor:pointer}\
button.quiet{background:#fff;color:#1d1d1b;border:1px solid #1d1d1b}\
.note{margin-top:1.25rem;font-size:.85rem;color:#6b6b66}\
label{display:block;margin:1rem 0 .35rem;font-weight:600}\
input[type=email],input[type=text]{display:block;width:100%;min-height:48px;padding:.6rem .75rem;border:1px solid #8a8a84;border-radius:8px;font:inherit;background:#fff;color:inherit}\
fieldset{margin:1.25rem 0;padding:0;border:0}\
legend{font-weight:600;padding:0}\
label.check{display:flex;gap:.75rem;align-items:flex-start;font-weight:400;margin:.75rem 0}\
label.check input{width:1.35rem;height:1.35rem;margin:.15rem 0 0;flex:none}\
.opt{font-weight:400;color:#6b6b66}\
.error{padding:.75rem 1rem;border-radius:8px;background:#fbeaea;color:#8a1c1c}\
.done{padding:.75rem 1rem;border-radius:8px;background:#e8f3ea;color:#1d5b2a}\
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}\
form+form{margin-top:.75rem}\
";

/// The Content-Security-Policy of every page: nothing but our one inline style, and
/// forms that post back to this origin.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

/// The Content-Security-Policy of the archive's files: the web versions of editions
/// keep their inline styles and remote images, but run no script, post no form and are
/// never framed (they share the unsubscribe pages' origin).
pub fn archive_content_security_policy() -> &'static str {
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline' https:; \
     font-src https: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
}

/// What every page needs to know about the newsletter.
pub struct Site {
    pub name: String,
    /// The address readers can write to (reply_to, or from).
    pub contact: String,
    /// `<html lang>`.
    pub language: String,
}

pub(super) fn page(site: &Site, title: &str, body: &str) -> String {
    let name = escape(&site.name);
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex\">\
<title>{title} · {name}</title><style>{STYLE}</style></head>\n\
<body><main><div class=\"card\"><p class=\"name\">{name}</p>\n{body}\n</div></main></body></html>\n",
        title = escape(title),
        lang = escape(&site.language),
    )
}

/// GET on a valid link: asks, changes nothing.
pub fn confirm(site: &Site, email: &str) -> String {
    page(
        site,
        "Unsubscribe?",
        &format!(
            "<h1>Unsubscribe from {name}?</h1>\n\
<p>You will no longer receive {name} at <span class=\"who\">{who}</span>.</p>\n\
<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
<button type=\"submit\">Unsubscribe</button></form>\n\
<p class=\"note\">Nothing changes until you press the button.</p>",
            name = escape(&site.name),
            who = escape(&mask(email)),
        ),
    )
}

/// After a POST: done, with a one-click way back. `resubscribe_action` is the
/// resubscribe URL relative to the page (`<token>/resubscribe`, or `resubscribe` when
/// the page's own URL ended with a slash).
pub fn unsubscribed(site: &Site, email: &str, resubscribe_action: &str) -> String {
    page(
        site,
        "Unsubscribed",
        &format!(
            "<h1>You are unsubscribed</h1>\n\
<p><span class=\"who\">{who}</span> will receive no more mail from {name}.</p>\n\
<form method=\"post\" action=\"{action}\">\
<button type=\"submit\" class=\"quiet\">Undo: resubscribe</button></form>\n\
<p class=\"note\">Unsubscribed by mistake? The button above puts you back on the list.</p>",
            name = escape(&site.name),
            who = escape(&mask(email)),
            action = escape(resubscribe_action),
        ),
    )
}

/// GET on the resubscribe link: asks, changes nothing.
pub fn confirm_resubscribe(site: &Site, email: &str) -> String {
    page(
        site,
        "Resubscribe?",
        &format!(
            "<h1>Resubscribe to {name}?</h1>\n\
<p><span class=\"who\">{who}</span> will receive {name} again.</p>\n\
<form method=\"post\"><button type=\"submit\">Resubscribe</button></form>",
            name = escape(&site.name),
            who = escape(&mask(email)),
        ),
    )
}

/// After a resubscribe POST.
pub fn resubscribed(site: &Site, email: &str, token: &str) -> String {
    page(
        site,
        "Resubscribed",
        &format!(
            "<h1>Welcome back</h1>\n\
<p><span class=\"who\">{who}</span> will receive {name} again.</p>\n\
<form method=\"post\" action=\"../{token}\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
<button type=\"submit\" class=\"quiet\">Unsubscribe after all</button></form>",
            name = escape(&site.name),
            who = escape(&mask(email)),
            token = escape(token),
        ),
    )
}

/// The suppression was made by the editors or after bounces: a link does not undo it.
pub fn kept(site: &Site) -> String {
    page(
        site,
        "Still unsubscribed",
        &format!(
            "<h1>Still unsubscribed</h1>\n\
<p>This address was taken off the list by the editors of {name}, so it cannot be put \
back from here. Write to <span class=\"who\">{contact}</span> and we will sort it out.</p>",
            name = escape(&site.name),
            contact = escape(&site.contact),
        ),
    )
}

/// Any link from a test send: inert.
pub fn test_message(site: &Site) -> String {
    page(
        site,
        "Test message",
        "<h1>This was a test message</h1>\n\
<p>Links in test sends do nothing: no address was unsubscribed or changed.</p>",
    )
}

/// Every unknown, forged, malformed or foreign link: one page, the same for all.
pub fn invalid_link(site: &Site) -> String {
    page(
        site,
        "Link not valid",
        &format!(
            "<h1>This link is not valid</h1>\n\
<p>It may have been copied incompletely. Use the unsubscribe link in the latest email \
from {name}, or write to <span class=\"who\">{contact}</span>.</p>",
            name = escape(&site.name),
            contact = escape(&site.contact),
        ),
    )
}

/// A short page for a status without more to say (404, 405, 413, 429, 503…).
pub fn status(site: &Site, heading: &str, text: &str) -> String {
    page(
        site,
        heading,
        &format!("<h1>{}</h1>\n<p>{}</p>", escape(heading), escape(text)),
    )
}

/// `ann@example.org` → `a••••@example.org`: enough for the reader to recognise, not
/// the address itself.
pub fn mask(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}••••@{domain}")
        }
        None => "••••".into(),
    }
}

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    crate::personalize::escape_value(s, crate::personalize::Escape::Html).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            name: "The <Brief>".into(),
            contact: "editors@example.org".into(),
            language: "en".into(),
        }
    }

    #[test]
    fn masks_and_escapes() {
        assert_eq!(mask("ann@example.org"), "a••••@example.org");
        assert_eq!(mask("Émile@x.fr"), "É••••@x.fr");
        assert_eq!(mask("nonsense"), "••••");
        let html = confirm(&site(), "ann@example.org");
        assert!(html.contains("The &lt;Brief&gt;"));
        assert!(!html.contains("ann@example.org"));
        assert!(html.contains("a••••@example.org"));
        assert!(html.contains("name=\"action\" value=\"unsubscribe\""));
    }

    #[test]
    fn style_hash_matches_the_page() {
        let html = test_message(&site());
        let start = html.find("<style>").unwrap() + 7;
        let end = html.find("</style>").unwrap();
        let hash = STANDARD.encode(Sha256::digest(&html.as_bytes()[start..end]));
        assert!(content_security_policy().contains(&format!("'sha256-{hash}'")));
    }
}
