//! The signup and preference-centre pages: the unsubscribe pages' look, chrome and
//! CSP ([`crate::serve::pages`]); only the form page adds one script (its hash in the
//! CSP), which solves the optional proof of work.

use crate::serve::pages::{escape, mask, page, Site};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Finds the proof of work before the form is sent. Without script the form is sent
/// without it, and the server asks for a short wait instead (see `signup::work_ok`).
const POW_SCRIPT: &str = "\
function z(h){var n=0;for(var i=0;i<h.length;i++){if(h[i]===0){n+=8;continue}n+=Math.clz32(h[i])-24;break}return n}\
document.querySelectorAll('form[data-pow]').forEach(function(f){f.addEventListener('submit',function(e){\
var w=f.elements.work;if(w.value||!window.crypto||!crypto.subtle)return;e.preventDefault();\
var c=f.elements.challenge.value,b=+f.getAttribute('data-pow'),t=new TextEncoder(),i=0;\
(function step(){crypto.subtle.digest('SHA-256',t.encode(c+':'+i)).then(function(d){\
if(z(new Uint8Array(d))>=b){w.value=String(i);f.submit()}else{i++;step()}})})()})});";

/// The CSP of the form page: the pages' own, plus the one script.
pub(crate) fn form_content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = STANDARD.encode(Sha256::digest(POW_SCRIPT.as_bytes()));
        crate::serve::pages::content_security_policy().replacen(
            "; form-action",
            &format!("; script-src 'sha256-{hash}'; form-action"),
            1,
        )
    })
}

/// A list as the pages show it.
pub(crate) struct Choice<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub checked: bool,
}

/// What the form shows again after a refusal.
#[derive(Default)]
pub(crate) struct Filled<'a> {
    pub email: &'a str,
    pub name: &'a str,
}

/// The proof of work the form carries.
pub(crate) struct Work<'a> {
    pub challenge: &'a str,
    pub bits: u8,
}

fn choices(lists: &[Choice<'_>]) -> String {
    lists
        .iter()
        .map(|l| {
            format!(
                "<label class=\"check\"><input type=\"checkbox\" name=\"list\" value=\"{value}\"{checked}>\
<span><strong>{title}</strong>{sep}{description}</span></label>\n",
                value = escape(l.name),
                checked = if l.checked { " checked" } else { "" },
                title = escape(l.title),
                sep = if l.description.is_empty() { "" } else { "<br>" },
                description = escape(l.description),
            )
        })
        .collect()
}

/// `GET …/subscribe`, and the same form again when something was wrong.
pub(crate) fn form(
    site: &Site,
    lists: &[Choice<'_>],
    consent: &str,
    error: Option<&str>,
    filled: &Filled<'_>,
    work: Option<&Work<'_>>,
) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e))
    });
    let (pow_attr, pow_fields, script) = match work {
        Some(w) => (
            format!(" data-pow=\"{}\"", w.bits),
            format!(
                "<input type=\"hidden\" name=\"challenge\" value=\"{}\"><input type=\"hidden\" name=\"work\" value=\"\">\n",
                escape(w.challenge)
            ),
            format!("\n<script>{POW_SCRIPT}</script>"),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let list_part = if lists.len() == 1 {
        // One list: nothing to choose.
        format!(
            "<input type=\"hidden\" name=\"list\" value=\"{}\">{}",
            escape(lists[0].name),
            if lists[0].description.is_empty() {
                String::new()
            } else {
                format!("<p>{}</p>\n", escape(lists[0].description))
            }
        )
    } else {
        format!(
            "<fieldset><legend>Newsletters</legend>\n{}</fieldset>\n",
            choices(lists)
        )
    };
    page(
        site,
        "Subscribe",
        &format!(
            "<h1>Subscribe to {name}</h1>\n{error}<form method=\"post\"{pow_attr}>\n\
<label for=\"email\">Email address</label>\
<input id=\"email\" name=\"email\" type=\"email\" required maxlength=\"254\" autocomplete=\"email\" inputmode=\"email\" value=\"{email}\">\n\
<label for=\"name\">Name <span class=\"opt\">(optional)</span></label>\
<input id=\"name\" name=\"name\" type=\"text\" maxlength=\"100\" autocomplete=\"name\" value=\"{who}\">\n\
{list_part}\
<div class=\"hp\" aria-hidden=\"true\"><label for=\"website\">Leave this field empty</label>\
<input id=\"website\" name=\"website\" type=\"text\" tabindex=\"-1\" autocomplete=\"off\"></div>\n\
{pow_fields}<p class=\"note\">{consent}</p>\n\
<button type=\"submit\">Subscribe</button></form>\n\
<p class=\"note\">We send you an email to confirm. Nothing is sent to you until you click its link.</p>{script}",
            name = escape(&site.name),
            email = escape(filled.email),
            who = escape(filled.name),
            consent = escape(consent),
        ),
    )
}

/// The one answer to every accepted signup, whoever the address belongs to.
pub(crate) fn check_inbox(site: &Site) -> String {
    page(
        site,
        "Check your inbox",
        &format!(
            "<h1>Check your inbox</h1>\n\
<p>If the address can receive {name}, a message with a confirmation link is on its way. \
Open the link to confirm your subscription.</p>\n\
<p class=\"note\">Nothing arrived after a few minutes? Look in your spam folder, or write to \
<span class=\"who\">{contact}</span>.</p>",
            name = escape(&site.name),
            contact = escape(&site.contact),
        ),
    )
}

/// GET on a confirmation link: asks, changes nothing (mail scanners open links too).
pub(crate) fn confirm(site: &Site, email: &str, lists: &[&str], consent: &str) -> String {
    let items: String = lists
        .iter()
        .map(|t| format!("<li>{}</li>", escape(t)))
        .collect();
    page(
        site,
        "Confirm your subscription",
        &format!(
            "<h1>Confirm your subscription</h1>\n\
<p><span class=\"who\">{who}</span> will receive:</p>\n<ul>{items}</ul>\n\
<p class=\"note\">{consent}</p>\n\
<form method=\"post\"><button type=\"submit\">Confirm</button></form>",
            who = escape(&mask(email)),
            consent = escape(consent),
        ),
    )
}

/// After a confirmation.
pub(crate) fn confirmed(site: &Site, email: &str, preferences: &str) -> String {
    page(
        site,
        "Subscribed",
        &format!(
            "<h1>You are subscribed</h1>\n\
<p><span class=\"who\">{who}</span> will receive {name}.</p>\n\
<p><a href=\"{preferences}\">Choose your newsletters, or see and delete your data</a></p>",
            who = escape(&mask(email)),
            name = escape(&site.name),
            preferences = escape(preferences),
        ),
    )
}

/// A confirmation link used before, by a reader who has changed things since.
pub(crate) fn used(site: &Site, subscribe: &str) -> String {
    page(
        site,
        "Link used",
        &format!(
            "<h1>This link was used already</h1>\n\
<p>Nothing was changed. To subscribe again, <a href=\"{subscribe}\">sign up</a> \
and open the new link.</p>",
            subscribe = escape(subscribe),
        ),
    )
}

/// A confirmation link past its time.
pub(crate) fn expired(site: &Site, subscribe: &str) -> String {
    page(
        site,
        "Link expired",
        &format!(
            "<h1>This link has expired</h1>\n\
<p>Confirmation links work for a limited time. <a href=\"{subscribe}\">Sign up again</a> \
and open the new link.</p>",
            subscribe = escape(subscribe),
        ),
    )
}

/// The preference centre.
pub(crate) fn preferences(
    site: &Site,
    email: &str,
    name: Option<&str>,
    lists: &[Choice<'_>],
    unsubscribed: bool,
    notice: Option<&str>,
) -> String {
    let notice = notice.map_or_else(String::new, |n| {
        format!("<p class=\"done\" role=\"status\">{}</p>\n", escape(n))
    });
    let state = if unsubscribed {
        format!(
            "<p>This address receives nothing from {} now. Choosing newsletters below subscribes it again.</p>\n",
            escape(&site.name)
        )
    } else {
        String::new()
    };
    let lists_part = if lists.is_empty() {
        String::new()
    } else {
        format!(
            "<fieldset><legend>Newsletters</legend>\n{}</fieldset>\n",
            choices(lists)
        )
    };
    let name_part = match name {
        Some(n) => format!(
            "<label for=\"name\">Name</label><input id=\"name\" name=\"name\" type=\"text\" maxlength=\"100\" autocomplete=\"name\" value=\"{}\">\n",
            escape(n)
        ),
        None => String::new(),
    };
    let save = if lists.is_empty() && name.is_none() {
        String::new()
    } else {
        format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"save\">\n{name_part}{lists_part}\
<button type=\"submit\">Save</button></form>\n"
        )
    };
    page(
        site,
        "Your preferences",
        &format!(
            "<h1>Your preferences</h1>\n{notice}<p>For <span class=\"who\">{who}</span>.</p>\n{state}{save}\
<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
<button type=\"submit\" class=\"quiet\">Unsubscribe from everything</button></form>\n\
<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"export\">\
<button type=\"submit\" class=\"quiet\">Download my data (JSON)</button></form>\n\
<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"delete\">\
<button type=\"submit\" class=\"quiet\">Delete my data</button></form>",
            who = escape(&mask(email)),
        ),
    )
}

/// Asked before erasing: a second button, nothing changed yet.
pub(crate) fn confirm_delete(site: &Site, email: &str) -> String {
    page(
        site,
        "Delete your data?",
        &format!(
            "<h1>Delete your data?</h1>\n\
<p>Your subscriptions, name, consent records and the record of what was sent to \
<span class=\"who\">{who}</span> are deleted. To make sure no old list mails you again, \
we keep a one-way hash of the address, nothing else.</p>\n\
<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"delete\">\
<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<button type=\"submit\">Delete my data</button></form>\n\
<form method=\"get\" action=\"\"><button type=\"submit\" class=\"quiet\">Keep it</button></form>",
            who = escape(&mask(email)),
        ),
    )
}

/// After erasing.
pub(crate) fn deleted(site: &Site) -> String {
    page(
        site,
        "Data deleted",
        &format!(
            "<h1>Your data is deleted</h1>\n\
<p>{name} will not write to this address again. To subscribe again later, use the \
signup form.</p>",
            name = escape(&site.name),
        ),
    )
}
