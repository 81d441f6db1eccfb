//! The web archive (`brief archive`): a static site with an index of the editions
//! (newest first), one page per edition at `<slug>/index.html` — where the email's
//! "view in browser" link (`<base_url>/<slug>/`) points — and an Atom feed.
//!
//! The pages are rendered from the edition through the same templates as the email,
//! with `web` set and markers instead of personal values: nothing of any subscriber
//! can reach a page. Links between pages are relative, nothing third-party is loaded,
//! and the folder is replaced in one step (see [`publish`]).

mod feed;
mod pages;
pub mod publish;

use crate::clock;
use crate::compile;
use crate::compose::{Composer, RecipientValues, WebView};
use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::edition::{self, Edition};
use crate::personalize::{self, Escape, Template};
use crate::store::{Store, REAL};
use anyhow::{Context, Result};
use chrono::{DateTime, NaiveTime, Utc};
use std::path::{Path, PathBuf};

/// File names at the top of the archive; an edition cannot use them as its slug.
const RESERVED: &[&str] = &["index.html", "feed.xml"];

/// One edition as published.
#[derive(Debug, Clone)]
pub struct Entry {
    pub edition: Edition,
    pub preheader: String,
    /// The page, complete (no markers).
    pub html: String,
    /// Its corrections, oldest first (`brief correct`).
    pub corrections: Vec<crate::correct::Correction>,
}

impl Entry {
    /// When the edition went (or goes) out: `send_at`, or midnight UTC of its date.
    pub fn published(&self) -> DateTime<Utc> {
        published(&self.edition)
    }

    /// When the page last changed: its latest correction, or its publication.
    pub fn updated(&self) -> DateTime<Utc> {
        self.corrections
            .iter()
            .map(|c| c.at)
            .fold(self.published(), DateTime::max)
    }
}

fn published(e: &Edition) -> DateTime<Utc> {
    e.send_at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| e.date.and_time(NaiveTime::MIN).and_utc())
}

/// What `brief archive` did.
#[derive(Debug)]
pub struct ArchiveSummary {
    pub out: PathBuf,
    /// Slugs, newest first.
    pub published: Vec<String>,
    /// Editions left out: not sent, and their `send_at` has not passed (or is not set).
    pub not_due: Vec<String>,
    pub warnings: Vec<Diagnostic>,
}

/// Which editions are in the archive by default: those whose `send_at` has passed, and
/// those the journal shows as sent (at least one recipient of the real send accepted).
pub fn is_published(edition: &Edition, now: DateTime<Utc>, sent: &[String]) -> bool {
    is_due(edition, now) || sent.contains(&edition.slug)
}

/// True if the edition's `send_at` has passed.
pub fn is_due(edition: &Edition, now: DateTime<Utc>) -> bool {
    edition.send_at.is_some_and(|t| t <= now)
}

/// The editions the journal shows as sent for real (test sends do not count). A
/// newsletter that never sent anything has no store yet: nothing is created then.
pub fn sent_editions(config: &Config) -> Result<Vec<String>> {
    let Some(store) = Store::existing_for_config(config)? else {
        return Ok(Vec::new());
    };
    let mut sent = Vec::new();
    for send in store.sends()? {
        if send.namespace == REAL && store.counts(&send.edition, REAL)?.sent > 0 {
            sent.push(send.edition);
        }
    }
    Ok(sent)
}

/// The editions of the newsletter that load, and the problems of those that do not
/// (by slug, the file's name).
pub struct Loaded {
    pub editions: Vec<Edition>,
    pub broken: Vec<(String, Vec<Diagnostic>)>,
}

/// Loads every edition of the newsletter, keeping the problems of the broken ones.
pub fn load_editions(config: &Config) -> Result<Loaded> {
    let paths = edition::all_paths(config).with_context(|| {
        format!(
            "cannot list the editions in {}",
            config.editions_dir().display()
        )
    })?;
    let mut loaded = Loaded {
        editions: Vec::new(),
        broken: Vec::new(),
    };
    for path in paths {
        let slug = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match edition::load(&path) {
            Ok(e) if RESERVED.contains(&e.slug.as_str()) => loaded.broken.push((
                slug,
                vec![Diagnostic::error(
                    &path,
                    1,
                    1,
                    format!(
                        "the slug `{}` is taken by the archive's own file: rename the edition",
                        e.slug
                    ),
                )],
            )),
            Ok(e) => loaded.editions.push(e),
            Err(d) => loaded.broken.push((slug, d.0)),
        }
    }
    Ok(loaded)
}

/// Renders the pages of `editions` (any order); returns them newest first.
pub fn render_entries(
    config: &Config,
    composer: &Composer,
    editions: Vec<Edition>,
    columns: &[String],
) -> Result<(Vec<Entry>, Vec<Diagnostic>), Diagnostics> {
    let web = web_view(config);
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    for edition in editions {
        match web_page(config, composer, edition, &web, columns) {
            Ok((entry, mut w)) => {
                entries.push(entry);
                warnings.append(&mut w);
            }
            Err(mut d) => problems.append(&mut d.0),
        }
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems));
    }
    entries.sort_by(|a, b| {
        (b.edition.date, b.published(), &b.edition.slug).cmp(&(
            a.edition.date,
            a.published(),
            &a.edition.slug,
        ))
    });
    Ok((entries, warnings))
}

/// `brief archive`: renders the chosen editions and replaces `out` with the new site.
pub fn build(config: &Config, out: &Path, all: bool) -> Result<ArchiveSummary> {
    let now = clock::now();
    let sent = if all {
        Vec::new()
    } else {
        sent_editions(config)?
    };
    let loaded = load_editions(config)?;
    // A broken edition stops the archive when it is (or may be) published: with --all,
    // when the journal shows it sent, or when the current archive has its page. A
    // broken draft is only reported, so an edition being written cannot hold back the
    // page of the one just sent.
    let mut blocking = Vec::new();
    let mut warnings = Vec::new();
    for (slug, problems) in loaded.broken {
        let published = all || sent.contains(&slug) || out.join(&slug).join("index.html").is_file();
        if published {
            blocking.extend(problems);
        } else {
            warnings.extend(problems.into_iter().map(|d| Diagnostic {
                severity: Severity::Warning,
                message: format!(
                    "{} (a draft that does not load: left out of the archive)",
                    d.message
                ),
                ..d
            }));
        }
    }
    if !blocking.is_empty() {
        return Err(Diagnostics(blocking).into());
    }
    let (editions, not_due): (Vec<Edition>, Vec<Edition>) = loaded
        .editions
        .into_iter()
        .partition(|e| all || is_published(e, now, &sent));
    let composer = Composer::new(config)?;
    let columns = crate::sample::SampleReader::load(config).columns();
    let (entries, mut rendered) = render_entries(config, &composer, editions, &columns)?;
    warnings.splice(0..0, composer.warnings.iter().cloned());
    warnings.append(&mut rendered);
    publish::replace_dir(out, &config.root, |dir| write_site(config, &entries, dir))?;
    let mut not_due: Vec<String> = not_due.into_iter().map(|e| e.slug).collect();
    not_due.sort();
    Ok(ArchiveSummary {
        out: out.to_path_buf(),
        published: entries.iter().map(|e| e.edition.slug.clone()).collect(),
        not_due,
        warnings,
    })
}

/// Writes the site into the (empty) folder `dir`.
pub fn write_site(config: &Config, entries: &[Entry], dir: &Path) -> Result<()> {
    let write = |rel: &str, content: &str| -> Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))
    };
    write("index.html", &pages::index(config, entries))?;
    write("feed.xml", &feed::atom(config, entries, clock::now()))?;
    for entry in entries {
        write(&format!("{}/index.html", entry.edition.slug), &entry.html)?;
    }
    Ok(())
}

/// The links the web footer offers instead of personal ones.
pub fn web_view(config: &Config) -> WebView {
    WebView {
        subscribe_url: subscribe_url(config),
        index_url: "../".into(),
        feed_url: "../feed.xml".into(),
    }
}

/// `archive.subscribe_url`; else `brief serve`'s signup form when a public managed
/// list exists; else a `mailto:` to the editors asking to subscribe.
pub fn subscribe_url(config: &Config) -> String {
    if let Some(url) = &config.archive.subscribe_url {
        return url.clone();
    }
    if config.lists.values().any(|l| l.public) {
        return format!(
            "{}/subscribe",
            config.newsletter.base_url.trim_end_matches('/')
        );
    }
    let n = &config.newsletter;
    let address = n.contact_mailbox().email.to_string();
    let subject: String =
        percent_encoding::utf8_percent_encode(&format!("Subscribe to {}", n.name), QUERY)
            .to_string();
    format!("mailto:{address}?subject={subject}")
}

const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

/// The web page of one edition, and warnings about it.
fn web_page(
    config: &Config,
    composer: &Composer,
    edition: Edition,
    web: &WebView,
    columns: &[String],
) -> Result<(Entry, Vec<Diagnostic>), Diagnostics> {
    let personal = RecipientValues::markers(columns);
    let composed = composer.compose_web(config, &edition, &personal, web.clone())?;
    let output = compile::compile_mjml(&composed.mjml).map_err(|findings| {
        Diagnostics(
            findings
                .iter()
                .filter(|f| f.error)
                .map(|f| {
                    Diagnostic::error(
                        &edition.path,
                        1,
                        1,
                        format!(
                            "the web version does not compile: {} (`brief build --edition {}` shows where)",
                            f.message, edition.slug
                        ),
                    )
                })
                .collect(),
        )
    })?;
    let mut warnings = Vec::new();
    let mut html = output.html;
    if personalize::has_marker_chars(&html) {
        // A template uses a personal field outside `{{#if web}}`: the page gets no
        // value for it, never anyone's.
        let template = Template::parse(&html);
        warnings.push(Diagnostic::warning(
            &edition.path,
            1,
            1,
            format!(
                "a template uses {} outside `{{{{#if web}}}}`: left empty on the web page",
                template.fields().join(", ")
            ),
        ));
        let values: Vec<&str> = template
            .fields()
            .iter()
            .map(|f| {
                if f == personalize::UNSUBSCRIBE_URL {
                    web.index_url.as_str()
                } else {
                    ""
                }
            })
            .collect();
        html = template.render(&values, Escape::Html);
    }
    let html = pages::with_head_links(config, &edition, &html);
    let corrections = crate::correct::load(&edition.path).map_err(|d| Diagnostics(vec![d]))?;
    let html = pages::with_corrections(&html, &corrections);
    Ok((
        Entry {
            preheader: composed.preheader,
            edition,
            html,
            corrections,
        },
        warnings,
    ))
}

/// Escapes text for HTML (text and attribute values).
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    personalize::escape_value(s, Escape::Html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn edition(slug: &str, send_at: Option<&str>) -> Edition {
        let send = send_at.map_or(String::new(), |t| format!("send_at = {t}\n"));
        let text = format!("+++\ntitle = \"T {slug}\"\ndate = 2026-01-02\n{send}+++\n\nBody.\n");
        edition::parse(Path::new(&format!("editions/{slug}.md")), &text).unwrap()
    }

    #[test]
    fn due_only_when_send_at_has_passed() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0).unwrap();
        assert!(is_due(&edition("a", Some("2026-01-02T12:00:00Z")), now));
        assert!(is_due(
            &edition("b", Some("2026-01-02T13:00:00+02:00")),
            now
        ));
        assert!(!is_due(&edition("c", Some("2026-01-02T12:00:01Z")), now));
        assert!(!is_due(&edition("d", None), now));
        assert!(is_published(&edition("d", None), now, &["d".to_string()]));
        assert!(!is_published(&edition("d", None), now, &["e".to_string()]));
    }

    #[test]
    fn published_falls_back_to_the_date() {
        let e = edition("a", None);
        assert_eq!(published(&e).to_rfc3339(), "2026-01-02T00:00:00+00:00");
    }
}
