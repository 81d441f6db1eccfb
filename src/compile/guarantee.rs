//! What every message must carry whatever the templates say: the reader's
//! unsubscribe link and the newsletter's postal address, in the HTML and in the text
//! part (CAN-SPAM; Gmail's and Yahoo's bulk-sender rules). Checked once per edition
//! on the compiled output, where per-reader values are still markers, so no override
//! of a partial, of the layout or of the text template can leave them out unnoticed.

use crate::compose::templates::{Kind, Source};
use crate::config::Config;
use crate::diag::Diagnostic;
use crate::personalize::{self, escape_value, Escape};

/// One error per part that lacks something, naming the templates responsible.
pub fn check(config: &Config, sources: &[Source], html: &str, text: &str) -> Vec<Diagnostic> {
    let unsubscribe = personalize::marker(personalize::UNSUBSCRIBE_URL);
    let address = config.newsletter.postal_address.trim();
    let mut problems = Vec::new();

    let mut html_missing = Vec::new();
    if !html.contains(&format!("href=\"{unsubscribe}\"")) {
        html_missing.push("a link to `{{unsubscribe_url}}`");
    }
    if !address.is_empty() && !contains_words(html, &escape_value(address, Escape::Html)) {
        html_missing.push("the postal address `{{newsletter.postal_address}}`");
    }
    if !html_missing.is_empty() {
        problems.push(missing(responsible(sources, true), "HTML", &html_missing));
    }

    let mut text_missing = Vec::new();
    if !text.contains(&unsubscribe) {
        text_missing.push("the link `{{unsubscribe_url}}`");
    }
    if !address.is_empty() && !contains_words(text, address) {
        text_missing.push("the postal address `{{newsletter.postal_address}}`");
    }
    if !text_missing.is_empty() {
        problems.push(missing(responsible(sources, false), "text", &text_missing));
    }
    problems
}

/// The templates to blame for a part: the overridden footer or layout (for the HTML)
/// or text template; failing that, any overridden template of that part.
fn responsible(sources: &[Source], html: bool) -> Vec<&Source> {
    let of_part = |s: &&Source| (s.kind != Kind::Text) == html && s.overridden;
    let usual: Vec<&Source> = sources
        .iter()
        .filter(of_part)
        .filter(|s| !html || matches!(s.name, "footer" | "layout"))
        .collect();
    if !usual.is_empty() {
        return usual;
    }
    let any: Vec<&Source> = sources.iter().filter(of_part).collect();
    if !any.is_empty() {
        return any;
    }
    let default = if html { "footer" } else { "text" };
    sources.iter().filter(|s| s.name == default).collect()
}

fn missing(sources: Vec<&Source>, part: &str, what: &[&str]) -> Diagnostic {
    let names: Vec<String> = sources.iter().map(|s| s.display()).collect();
    let file = sources
        .first()
        .map_or_else(|| "templates".into(), |s| s.path.clone());
    Diagnostic::error(
        file,
        1,
        1,
        format!(
            "every message must carry {} in its {part} part, and {} leave{} {} out",
            what.join(" and "),
            names.join(" and "),
            if names.len() == 1 { "s" } else { "" },
            if what.len() == 1 { "it" } else { "them" },
        ),
    )
}

/// `needle` in `haystack`, any run of whitespace matching any other (the text part
/// is wrapped, and templates indent).
fn contains_words(haystack: &str, needle: &str) -> bool {
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    flat(haystack).contains(&flat(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_runs_match() {
        assert!(contains_words(
            "a\n  1 Example\nQuay, Town",
            "1 Example Quay,"
        ));
        assert!(!contains_words("1 Example Road", "1 Example Quay"));
    }
}
