//! Compose: an edition rendered through the templates into MJML (for the HTML part)
//! and into the plain-text part. Per-recipient values are personalization markers
//! here; they are filled in after compilation (see `personalize`).

pub mod markdown;
pub mod templates;
pub mod text;

use crate::config::Config;
use crate::config::TrackedSection;
use crate::diag::{Diagnostic, Diagnostics};
use crate::edition::Edition;
use crate::personalize;
use crate::token;
use crate::tracking::Rewriter;
use handlebars::{Context, Handlebars};
use markdown::RenderedMarkdown;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use templates::{Kind, Source};

/// An edition composed: subject, preheader, MJML and the finished text part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub preheader: String,
    pub mjml: String,
    pub text: String,
}

/// The per-recipient values templates can use. For compile-once these are markers
/// ([`RecipientValues::markers`]); a test renders real values to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientValues {
    pub unsubscribe_url: String,
    pub preferences_url: String,
    /// `email`, `name` and every other subscriber column.
    pub subscriber: BTreeMap<String, String>,
}

impl RecipientValues {
    /// Markers for the unsubscribe URL, `email`, `name` and each of `columns`.
    pub fn markers(columns: &[String]) -> RecipientValues {
        let mut subscriber = BTreeMap::new();
        for column in ["email", "name"]
            .into_iter()
            .chain(columns.iter().map(String::as_str))
        {
            subscriber.insert(
                column.to_string(),
                personalize::marker(&personalize::subscriber_field(column)),
            );
        }
        RecipientValues {
            unsubscribe_url: personalize::marker(personalize::UNSUBSCRIBE_URL),
            preferences_url: personalize::marker(personalize::PREFERENCES_URL),
            subscriber,
        }
    }
}

/// The templates of one newsletter, parsed once and used for any number of editions.
pub struct Composer {
    registries: templates::Registries,
    sources: Vec<Source>,
    /// Non-fatal problems found while loading (unknown files in templates/).
    pub warnings: Vec<Diagnostic>,
}

impl Composer {
    /// Loads the defaults and the overrides in `config`'s `templates/` folder.
    pub fn new(config: &Config) -> Result<Composer, Diagnostics> {
        Composer::from_dir(&config.templates_dir())
    }

    /// Loads the defaults and the overrides in `dir`; reports every broken template.
    pub fn from_dir(dir: &Path) -> Result<Composer, Diagnostics> {
        let (sources, mut problems) = templates::load_sources(dir);
        match templates::registries(&sources, false) {
            Ok(registries) if !problems.iter().any(Diagnostic::is_error) => Ok(Composer {
                registries,
                sources,
                warnings: problems,
            }),
            Ok(_) => Err(Diagnostics(problems)),
            Err(mut errors) => {
                problems.append(&mut errors);
                Err(Diagnostics(problems))
            }
        }
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    fn source(&self, kind: Kind) -> &Source {
        self.sources
            .iter()
            .find(|s| s.kind == kind)
            .expect("the template set always has a layout and a text template")
    }

    /// Composes `edition` with per-recipient `personal` values (usually markers).
    pub fn compose(
        &self,
        config: &Config,
        edition: &Edition,
        personal: &RecipientValues,
    ) -> Result<Composed, Diagnostics> {
        self.compose_for(config, edition, personal, None, None)
    }

    /// Composes `edition` with its links passed through `links` (tracked links and UTM
    /// parameters, `[tracking]`): the HTML and the text part get the same links.
    pub fn compose_tracked(
        &self,
        config: &Config,
        edition: &Edition,
        personal: &RecipientValues,
        links: &Rewriter,
    ) -> Result<Composed, Diagnostics> {
        self.compose_for(config, edition, personal, None, Some(links))
    }

    /// Composes the web version of `edition` (the archive page): templates see `web`
    /// (`{{#if web}}`) and `web_url` is the page itself (`./`). `personal` should be
    /// markers, so the caller can tell whether a template still uses a personal field.
    pub fn compose_web(
        &self,
        config: &Config,
        edition: &Edition,
        personal: &RecipientValues,
        web: WebView,
    ) -> Result<Composed, Diagnostics> {
        self.compose_for(config, edition, personal, Some(web), None)
    }

    fn compose_for(
        &self,
        config: &Config,
        edition: &Edition,
        personal: &RecipientValues,
        web: Option<WebView>,
        links: Option<&Rewriter>,
    ) -> Result<Composed, Diagnostics> {
        let parts = Parts::render(edition, links);
        let mut view = View::new(config, edition, &parts, personal, links);
        if let Some(web) = web {
            view.web_url = "./".to_string();
            view.web = Some(web);
        }
        // One conversion of the data for both renders.
        let context = Context::wraps(&view).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(&edition.path, 1, 1, e.to_string())])
        })?;
        let mut problems = Vec::new();
        let r = &self.registries;
        let mut render = |registry: &Handlebars<'static>, kind: Kind| {
            let name = self.source(kind).name;
            registry
                .render_with_context(name, &context)
                .map_err(|e| {
                    problems.push(templates::render_error(
                        &self.sources,
                        self.source(kind),
                        &e,
                    ))
                })
                .unwrap_or_default()
        };
        let mjml = render(&r.html, Kind::Layout);
        let text = render(&r.text, Kind::Text);
        if !problems.is_empty() {
            return Err(Diagnostics(problems));
        }
        Ok(Composed {
            subject: view.subject.to_string(),
            preheader: view.preheader.clone(),
            mjml,
            text: text::finish(&text),
        })
    }

    /// The MJML again, with each partial's output between `<!--brief-template:NAME-->`
    /// comments, so a problem found in the composed MJML can be traced to its template.
    /// Only used on the error path.
    pub fn compose_traced(
        &self,
        config: &Config,
        edition: &Edition,
        personal: &RecipientValues,
    ) -> Option<String> {
        let traced = templates::registries(&self.sources, true).ok()?;
        let parts = Parts::render(edition, None);
        let view = View::new(config, edition, &parts, personal, None);
        traced
            .html
            .render(self.source(Kind::Layout).name, &view)
            .ok()
    }
}

/// Comment markers used by [`Composer::compose_traced`].
pub const TRACE_OPEN: &str = "brief-template:";
pub const TRACE_CLOSE: &str = "/brief-template";

/// The Markdown fields of an edition, rendered.
struct Parts {
    essay: RenderedMarkdown,
    sponsor: Option<RenderedMarkdown>,
    roundup: Vec<Option<RenderedMarkdown>>,
    agenda: Vec<RenderedMarkdown>,
}

impl Parts {
    fn render(e: &Edition, links: Option<&Rewriter>) -> Parts {
        let section = |s: TrackedSection| move |url: &str| track(links, s, url);
        let (essay, sponsor, roundup, agenda) = (
            section(TrackedSection::Essay),
            section(TrackedSection::Sponsor),
            section(TrackedSection::Roundup),
            section(TrackedSection::Agenda),
        );
        Parts {
            essay: markdown::block_with_links(&e.body, &essay),
            sponsor: e
                .sponsor
                .as_ref()
                .map(|s| markdown::inline_with_links(&s.text, &sponsor)),
            roundup: e.roundup.as_ref().map_or_else(Vec::new, |r| {
                r.items
                    .iter()
                    .map(|i| {
                        i.text
                            .as_deref()
                            .map(|t| markdown::inline_with_links(t, &roundup))
                    })
                    .collect()
            }),
            agenda: e.agenda.as_ref().map_or_else(Vec::new, |a| {
                a.items
                    .iter()
                    .map(|i| markdown::inline_with_links(&i.text, &agenda))
                    .collect()
            }),
        }
    }
}

/// `url` as the edition carries it: through the rewriter when there is one.
fn track(links: Option<&Rewriter>, section: TrackedSection, url: &str) -> String {
    match links {
        Some(r) => r.link(section, url),
        None => url.to_string(),
    }
}

/// The template data: a typed view borrowing the edition and config. Fields holding
/// HTML (`essay.html`, `sponsor.html`, item `html`) were escaped by brief and are used
/// with `{{{triple braces}}}`; everything else is plain text, escaped by the registry.
#[derive(Serialize)]
struct View<'a> {
    newsletter: NewsletterView<'a>,
    edition: EditionView<'a>,
    subject: &'a str,
    preheader: String,
    sponsor: Option<SponsorView<'a>>,
    essay: &'a RenderedMarkdown,
    roundup: Option<SectionView<'a, RoundupItemView<'a>>>,
    agenda: Option<SectionView<'a, AgendaItemView<'a>>>,
    editors: &'a [String],
    read_more: Vec<LinkView<'a>>,
    web_url: String,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    subscriber: &'a BTreeMap<String, String>,
    /// Set only on the web (archive) version: links for its footer.
    web: Option<WebView>,
    /// Corrections of earlier editions this one carries (`brief correct`).
    corrections: Vec<crate::correct::Carried>,
}

/// What the web version of an edition offers instead of personal links.
#[derive(Debug, Clone, Serialize)]
pub struct WebView {
    /// Where to subscribe (a sign-up page or a `mailto:` link).
    pub subscribe_url: String,
    /// The archive's index, relative to the edition page (`../`).
    pub index_url: String,
    /// The Atom feed, relative to the edition page (`../feed.xml`).
    pub feed_url: String,
}

/// The newsletter as templates see it (`newsletter.*`), for editions and corrections.
#[derive(Serialize)]
pub(crate) struct NewsletterView<'a> {
    name: &'a str,
    postal_address: &'a str,
    base_url: &'a str,
    language: &'a str,
}

impl<'a> NewsletterView<'a> {
    pub(crate) fn new(n: &'a crate::config::Newsletter) -> Self {
        NewsletterView {
            name: &n.name,
            postal_address: &n.postal_address,
            base_url: &n.base_url,
            language: &n.language,
        }
    }
}

#[derive(Serialize)]
struct EditionView<'a> {
    slug: &'a str,
    title: &'a str,
    kicker: Option<&'a str>,
    /// `2026-11-20`
    date: String,
    /// `Friday, 20 November 2026`
    date_long: String,
}

#[derive(Serialize)]
struct SponsorView<'a> {
    label: &'a str,
    html: &'a str,
    text: &'a str,
    url: String,
    image: Option<&'a str>,
    cta: Option<&'a str>,
}

#[derive(Serialize)]
struct SectionView<'a, T> {
    title: &'a str,
    items: Vec<T>,
}

#[derive(Serialize)]
struct RoundupItemView<'a> {
    headline: &'a str,
    html: Option<&'a str>,
    text: Option<&'a str>,
    url: Option<String>,
}

#[derive(Serialize)]
struct AgendaItemView<'a> {
    html: &'a str,
    text: &'a str,
    when: Option<&'a str>,
    r#where: Option<&'a str>,
    /// `when, where` (whichever are set).
    label: Option<String>,
}

#[derive(Serialize)]
struct LinkView<'a> {
    title: &'a str,
    url: String,
}

impl<'a> View<'a> {
    fn new(
        config: &'a Config,
        e: &'a Edition,
        parts: &'a Parts,
        personal: &'a RecipientValues,
        links: Option<&Rewriter>,
    ) -> View<'a> {
        let n = &config.newsletter;
        View {
            newsletter: NewsletterView::new(n),
            edition: EditionView {
                slug: &e.slug,
                title: &e.title,
                kicker: e.kicker.as_deref(),
                date: e.date.format("%Y-%m-%d").to_string(),
                date_long: e.date.format("%A, %-d %B %Y").to_string(),
            },
            subject: e.subject.as_deref().unwrap_or(&e.title),
            preheader: e
                .preheader
                .clone()
                .unwrap_or_else(|| preheader_from(&parts.essay.text)),
            sponsor: e
                .sponsor
                .as_ref()
                .zip(parts.sponsor.as_ref())
                .map(|(s, r)| SponsorView {
                    label: s.label.as_deref().unwrap_or("Sponsored"),
                    html: &r.html,
                    text: &r.text,
                    url: track(links, TrackedSection::Sponsor, &s.url),
                    image: s.image.as_deref(),
                    cta: s.cta.as_deref(),
                }),
            essay: &parts.essay,
            roundup: e.roundup.as_ref().map(|r| SectionView {
                title: r.title.as_deref().unwrap_or(&n.roundup_title),
                items: r
                    .items
                    .iter()
                    .zip(&parts.roundup)
                    .map(|(i, rendered)| RoundupItemView {
                        headline: &i.headline,
                        html: rendered.as_ref().map(|r| r.html.as_str()),
                        text: rendered.as_ref().map(|r| r.text.as_str()),
                        url: i
                            .url
                            .as_deref()
                            .map(|u| track(links, TrackedSection::Roundup, u)),
                    })
                    .collect(),
            }),
            agenda: e.agenda.as_ref().map(|a| SectionView {
                title: a.title.as_deref().unwrap_or(&n.agenda_title),
                items: a
                    .items
                    .iter()
                    .zip(&parts.agenda)
                    .map(|(i, rendered)| AgendaItemView {
                        html: &rendered.html,
                        text: &rendered.text,
                        when: i.when.as_deref(),
                        r#where: i.r#where.as_deref(),
                        label: match (i.when.as_deref(), i.r#where.as_deref()) {
                            (Some(w), Some(p)) => Some(format!("{w}, {p}")),
                            (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
                            (None, None) => None,
                        },
                    })
                    .collect(),
            }),
            editors: &e.editors,
            read_more: e
                .read_more
                .iter()
                .map(|l| LinkView {
                    title: &l.title,
                    url: track(links, TrackedSection::ReadMore, &l.url),
                })
                .collect(),
            web_url: token::web_url(&n.base_url, &e.slug),
            unsubscribe_url: &personal.unsubscribe_url,
            preferences_url: &personal.preferences_url,
            subscriber: &personal.subscriber,
            web: None,
            corrections: crate::correct::carried_by(config, e),
        }
    }
}

/// The preheader when the edition sets none: the start of the essay, cut at a word.
pub fn preheader_from(essay_text: &str) -> String {
    const MAX: usize = 140;
    let flat: Vec<&str> = essay_text
        .lines()
        .filter(|l| !l.chars().all(|c| c == '=' || c == '-'))
        .flat_map(str::split_whitespace)
        .collect();
    let mut out = String::new();
    for word in flat {
        let extra = if out.is_empty() { 0 } else { 1 };
        if out.chars().count() + extra + word.chars().count() > MAX {
            out.push('…');
            break;
        }
        if extra == 1 {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preheader_is_cut_at_a_word() {
        let p = preheader_from(&"lorem ipsum ".repeat(30));
        assert!(p.ends_with("…"));
        assert!(p.chars().count() <= 141);
        assert!(!p.contains("  "));
    }

    #[test]
    fn markers_cover_columns() {
        let p = RecipientValues::markers(&["city".to_string()]);
        assert_eq!(
            p.subscriber.keys().collect::<Vec<_>>(),
            ["city", "email", "name"]
        );
        assert_eq!(p.subscriber["city"], personalize::marker("subscriber.city"));
    }
}
