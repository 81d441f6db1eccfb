//! Corrections (`brief correct`): a dated note added to an edition after it went out.
//!
//! The corrections of edition `<slug>` live next to it, in `editions/<slug>.corrections.toml`
//! (`[[correction]]` tables with `at` and `note`), not in the state store: a correction
//! is editorial text like the edition itself, reviewed and versioned with it, and the
//! archive, the preview and the next edition read it from the newsletter folder on any
//! machine, with or without the sender's journal. The store only keeps who was mailed
//! the correction (journal namespace [`NAMESPACE`]), exactly like a send.
//!
//! The correction message is rendered from `templates/correction.mjml.hbs` and
//! `templates/correction.txt.hbs` (built-in defaults, overridable like every template)
//! and delivered through the send path ([`crate::send::Plan::prepare_correction`]).

use crate::compile;
use crate::compose::templates::{Kind, Source};
use crate::compose::{markdown, NewsletterView};
use crate::config::Config;
use crate::diag::{toml_error, Diagnostic, Diagnostics};
use crate::edition::{self, Edition};
use crate::personalize;
use crate::token;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveTime, Utc};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The journal namespace of correction messages (a test one goes to `store::TEST`).
pub const NAMESPACE: &str = "correction";

/// The template files of the correction message, under `templates/`.
pub const TEMPLATE_FILES: [&str; 2] = ["correction.mjml.hbs", "correction.txt.hbs"];
const DEFAULT_MJML: &str = include_str!("../templates/correction.mjml.hbs");
const DEFAULT_TEXT: &str = include_str!("../templates/correction.txt.hbs");

/// One correction of an edition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// When it was recorded (a TOML date-time with an offset, or an RFC 3339 string).
    #[serde(with = "toml_time")]
    pub at: DateTime<Utc>,
    /// Markdown.
    pub note: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    correction: Vec<Correction>,
}

/// `at` as a TOML offset date-time (`at = 2026-11-21T10:00:00Z`).
mod toml_time {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Toml(toml::value::Datetime),
        Text(String),
    }

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let text = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match text.parse::<toml::value::Datetime>() {
            Ok(t) => t.serialize(s),
            Err(_) => text.serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = match Written::deserialize(d)? {
            Written::Toml(t) => t.to_string(),
            Written::Text(t) => t,
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                D::Error::custom(
                    "`at` must be a date and time with an offset, like 2026-11-21T10:00:00Z",
                )
            })
    }
}

/// `editions/<slug>.corrections.toml` for the edition file `editions/<slug>.md`.
pub fn file_path(edition_path: &Path) -> PathBuf {
    let stem = edition_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    edition_path.with_file_name(format!("{stem}.corrections.toml"))
}

/// The corrections of the edition at `edition_path`, oldest first (none without a file).
pub fn load(edition_path: &Path) -> Result<Vec<Correction>, Diagnostic> {
    let path = file_path(edition_path);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Diagnostic::error(&path, 1, 1, format!("cannot read: {e}"))),
    };
    let mut file: File = toml::from_str(&source).map_err(|e| toml_error(&path, &source, 0, &e))?;
    file.correction.sort_by_key(|c| c.at);
    Ok(file.correction)
}

/// Which correction a note is: its 1-based number, and whether it is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    pub number: usize,
    pub new: bool,
}

/// The number `note` has or would get: an identical note (ignoring surrounding blank
/// space) already recorded keeps its number, so running `brief correct` again resumes
/// instead of correcting twice.
pub fn number_of(existing: &[Correction], note: &str) -> Numbered {
    match existing.iter().position(|c| c.note.trim() == note.trim()) {
        Some(i) => Numbered {
            number: i + 1,
            new: false,
        },
        None => Numbered {
            number: existing.len() + 1,
            new: true,
        },
    }
}

/// Records `note` for the edition at `edition_path` (unless already there), replacing
/// the corrections file in one step.
pub fn record(edition_path: &Path, note: &str, at: DateTime<Utc>) -> Result<Numbered> {
    let mut existing = load(edition_path).map_err(anyhow::Error::new)?;
    let numbered = number_of(&existing, note);
    if numbered.new {
        existing.push(Correction {
            at,
            note: note.trim().to_string(),
        });
        let path = file_path(edition_path);
        let text = format!(
            "# Corrections of this edition, added by `brief correct` (oldest first).\n\n{}",
            toml::to_string(&File {
                correction: existing,
            })?
        );
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(numbered)
}

/// The journal key of correction `number` of `slug`: `<slug>+correction-<n>` (a `+`
/// cannot be in a slug, so it never names an edition).
pub fn journal_key(slug: &str, number: usize) -> String {
    format!("{slug}+correction-{number}")
}

/// The note read from `path`: Markdown, not empty.
pub fn read_note(path: &Path) -> Result<String> {
    let note = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the note {}", path.display()))?;
    if note.trim().is_empty() {
        bail!("{}: the note is empty", path.display());
    }
    if personalize::has_marker_chars(&note) {
        bail!(
            "{}: the note contains characters reserved by brief (U+E000, U+E001)",
            path.display()
        );
    }
    Ok(note.replace("\r\n", "\n"))
}

/// The correction message, compiled once (markers for the per-recipient values).
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Serialize)]
struct View<'a> {
    newsletter: NewsletterView<'a>,
    edition: EditionView<'a>,
    subject: &'a str,
    correction: CorrectionView,
    web_url: String,
    unsubscribe_url: String,
    subscriber: SubscriberView,
}

#[derive(Serialize)]
struct EditionView<'a> {
    slug: &'a str,
    title: &'a str,
    date: String,
    date_long: String,
}

#[derive(Serialize)]
struct CorrectionView {
    date: String,
    date_long: String,
    html: String,
    text: String,
    preheader: String,
}

#[derive(Serialize)]
struct SubscriberView {
    email: String,
}

fn correction_view(c: &Correction) -> CorrectionView {
    let rendered = markdown::block(&c.note);
    CorrectionView {
        date: c.at.format("%Y-%m-%d").to_string(),
        date_long: c.at.format("%A, %-d %B %Y").to_string(),
        preheader: crate::compose::preheader_from(&rendered.text),
        html: rendered.html,
        text: rendered.text,
    }
}

/// A template of the newsletter's folder, or the built-in default.
fn template(config: &Config, file: &str, default: &str) -> Result<Source> {
    let path = config.templates_dir().join(file);
    let (text, overridden) = match std::fs::read_to_string(&path) {
        Ok(text) => (text.replace("\r\n", "\n"), true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (default.to_string(), false),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
        }
    };
    let html = file.ends_with(".mjml.hbs");
    Ok(Source {
        name: if html {
            "correction"
        } else {
            "correction_text"
        },
        kind: if html { Kind::Layout } else { Kind::Text },
        path,
        text,
        overridden,
    })
}

/// Renders and compiles the correction message of `correction` to `edition`, subject
/// "Correction: <title>".
pub fn message(config: &Config, edition: &Edition, correction: &Correction) -> Result<Message> {
    let subject = format!("Correction: {}", edition.title);
    let n = &config.newsletter;
    let view = View {
        newsletter: NewsletterView::new(n),
        edition: EditionView {
            slug: &edition.slug,
            title: &edition.title,
            date: edition.date.format("%Y-%m-%d").to_string(),
            date_long: edition.date.format("%A, %-d %B %Y").to_string(),
        },
        subject: &subject,
        correction: correction_view(correction),
        web_url: token::web_url(&n.base_url, &edition.slug),
        unsubscribe_url: personalize::marker(personalize::UNSUBSCRIBE_URL),
        subscriber: SubscriberView {
            email: personalize::marker(&personalize::subscriber_field("email")),
        },
    };
    let mjml_source = template(config, TEMPLATE_FILES[0], DEFAULT_MJML)?;
    let text_source = template(config, TEMPLATE_FILES[1], DEFAULT_TEXT)?;
    let render = |template: &Source, html: bool| -> Result<String> {
        let (path, source, file) = (&template.path, &template.text, template.name);
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        if html {
            registry.register_escape_fn(|s| {
                personalize::escape_value(s, personalize::Escape::Html).into_owned()
            });
        } else {
            registry.register_escape_fn(handlebars::no_escape);
        }
        registry
            .register_template_string(file, source)
            .map_err(|e| {
                let (line, col) = e.pos().unwrap_or((1, 1));
                Diagnostic::error(
                    path,
                    line,
                    col,
                    format!("template does not parse: {}", e.reason()),
                )
            })?;
        registry.render(file, &view).map_err(|e| {
            anyhow::Error::new(Diagnostic::error(
                path,
                e.line_no.unwrap_or(1),
                e.column_no.unwrap_or(1),
                e.reason().to_string(),
            ))
        })
    };
    let mjml = render(&mjml_source, true)?;
    let text = crate::compose::text::finish(&render(&text_source, false)?);
    let output = compile::compile_mjml(&mjml).map_err(|findings| {
        let path = config.templates_dir().join(TEMPLATE_FILES[0]);
        Diagnostics(
            findings
                .iter()
                .filter(|f| f.error)
                .map(|f| Diagnostic::at_offset(&path, &mjml, f.offset, f.message.clone()))
                .collect(),
        )
    })?;
    // The same guarantees as an edition: the unsubscribe link and the postal address
    // in both parts, whatever an override says.
    let missing =
        compile::guarantee::check(config, &[mjml_source, text_source], &output.html, &text);
    if !missing.is_empty() {
        return Err(Diagnostics(missing).into());
    }
    Ok(Message {
        subject,
        html: output.html,
        text,
    })
}

/// What is wrong with the correction message's templates (for `brief check`): they
/// are rendered and compiled for a sample correction.
pub fn template_problems(config: &Config) -> Vec<Diagnostic> {
    let sample = edition::parse(
        &config.editions_dir().join("sample.md"),
        "+++\ntitle = \"A sample edition\"\ndate = 2026-01-01\n+++\n\nText.\n",
    );
    let Ok(sample) = sample else {
        return Vec::new();
    };
    let correction = Correction {
        at: sample.date.and_time(NaiveTime::MIN).and_utc(),
        note: "A *sample* note.".into(),
    };
    match message(config, &sample, &correction) {
        Ok(_) => Vec::new(),
        Err(e) => {
            if let Some(d) = e.downcast_ref::<Diagnostic>() {
                vec![d.clone()]
            } else if let Some(d) = e.downcast_ref::<Diagnostics>() {
                d.0.clone()
            } else {
                vec![Diagnostic::error(
                    config.templates_dir().join(TEMPLATE_FILES[0]),
                    1,
                    1,
                    format!("{e:#}"),
                )]
            }
        }
    }
}

/// A correction as the next edition's templates see it (`{{#each corrections}}`).
#[derive(Debug, Clone, Serialize)]
pub struct Carried {
    /// The corrected edition's title and web page.
    pub title: String,
    pub url: String,
    /// The correction's date, `2026-11-21`.
    pub date: String,
    /// The note as HTML (escaped by brief: use `{{{html}}}`) and as text.
    pub html: String,
    pub text: String,
}

fn published(e: &Edition) -> DateTime<Utc> {
    e.send_at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| e.date.and_time(NaiveTime::MIN).and_utc())
}

/// The corrections `edition` carries: those of earlier editions recorded after the
/// edition just before it went out and before this one goes out. Editions that do not
/// load are passed over (`brief check` reports them).
pub fn carried_by(config: &Config, edition: &Edition) -> Vec<Carried> {
    let Ok(paths) = edition::all_paths(config) else {
        return Vec::new();
    };
    // Most editions of most newsletters carry nothing: no edition is loaded then.
    if !paths.iter().any(|p| file_path(p).is_file()) {
        return Vec::new();
    }
    let others: Vec<Edition> = paths
        .iter()
        .filter(|p| p.as_path() != edition.path.as_path())
        .filter_map(|p| edition::load(p).ok())
        .filter(|e| e.slug != edition.slug && published(e) < published(edition))
        .collect();
    let since = others.iter().map(published).max();
    let until = published(edition);
    let mut carried = Vec::new();
    for e in &others {
        for c in load(&e.path).unwrap_or_default() {
            if since.is_some_and(|s| c.at >= s) && c.at < until {
                let view = correction_view(&c);
                carried.push((
                    c.at,
                    Carried {
                        title: e.title.clone(),
                        url: token::web_url(&config.newsletter.base_url, &e.slug),
                        date: view.date,
                        html: view.html,
                        text: view.text,
                    },
                ));
            }
        }
    }
    carried.sort_by_key(|(at, _)| *at);
    carried.into_iter().map(|(_, c)| c).collect()
}

/// The block the archive page of a corrected edition shows at its top.
pub fn archive_block(corrections: &[Correction]) -> String {
    let mut out = String::from(
        "<aside class=\"brief-corrections\" style=\"max-width:600px;margin:16px auto;padding:12px 20px;background:#fff7e6;border-left:4px solid #a33a2a;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#1f2328;\">\n",
    );
    for c in corrections {
        let view = correction_view(c);
        out.push_str(&format!(
            "<div class=\"brief-correction\"><p style=\"margin:0 0 4px;font-weight:bold;\">Correction, <time datetime=\"{}\">{}</time></p>{}</div>\n",
            c.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            view.date_long,
            view.html
        ));
    }
    out.push_str("</aside>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap()
    }

    #[test]
    fn the_same_note_keeps_its_number_and_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let edition = dir.path().join("e1.md");
        assert_eq!(file_path(&edition), dir.path().join("e1.corrections.toml"));
        let first = record(&edition, "The train leaves at 9.\n", at(21)).unwrap();
        assert_eq!((first.number, first.new), (1, true));
        let again = record(&edition, "\nThe train leaves at 9.", at(22)).unwrap();
        assert_eq!((again.number, again.new), (1, false));
        let second = record(&edition, "And from platform 3.", at(23)).unwrap();
        assert_eq!((second.number, second.new), (2, true));
        let all = load(&edition).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].at, at(21));
        assert_eq!(all[1].note, "And from platform 3.");
    }

    #[test]
    fn a_broken_corrections_file_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let edition = dir.path().join("e1.md");
        std::fs::write(
            file_path(&edition),
            "[[correction]]\nat = 2026-11-21T10:00:00Z\nnote = \"x\"\nnot = 1\n",
        )
        .unwrap();
        let d = load(&edition).unwrap_err();
        assert_eq!(d.line, 4, "{d}");
    }

    #[test]
    fn the_archive_block_escapes_the_note() {
        let block = archive_block(&[Correction {
            at: at(21),
            note: "It was <b>Tuesday</b> & not Monday.".into(),
        }]);
        assert!(
            block.contains("&lt;b&gt;Tuesday&lt;/b&gt; &amp; not Monday"),
            "{block}"
        );
        assert!(block.contains("Saturday, 21 November 2026"));
    }
}
