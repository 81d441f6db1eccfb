//! The edition file (`editions/<slug>.md`): TOML front matter between `+++` lines,
//! then the essay in Markdown. Parsing is strict and every problem is reported with
//! file:line:column; validation collects all problems of a file, not just the first.

use crate::config::Config;
use crate::diag::{line_col, toml_error, Diagnostic, Diagnostics};
use crate::personalize;
use chrono::{DateTime, FixedOffset, NaiveDate};
use pulldown_cmark::{Event, Options, Parser, Tag};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::value::Datetime;
use toml::Spanned;

/// Markdown nested deeper than this (blockquotes, lists) is refused: nobody writes it,
/// and the MJML compiler recurses once per level.
pub const MAX_MARKDOWN_DEPTH: usize = 32;

/// A parsed, validated edition.
#[derive(Debug, Clone, PartialEq)]
pub struct Edition {
    pub slug: String,
    pub path: PathBuf,
    pub title: String,
    pub subject: Option<String>,
    pub kicker: Option<String>,
    pub date: NaiveDate,
    pub send_at: Option<DateTime<FixedOffset>>,
    pub preheader: Option<String>,
    pub audience: Option<Vec<String>>,
    /// Names for the "[Edited by …]" credit.
    pub editors: Vec<String>,
    pub sponsor: Option<Sponsor>,
    pub roundup: Option<Roundup>,
    pub agenda: Option<Agenda>,
    pub read_more: Vec<Link>,
    /// The essay, Markdown.
    pub body: String,
    /// Where things are in the file, for messages about them found later
    /// (an audience list that does not exist, say).
    pub locations: Locations,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sponsor {
    pub label: Option<String>,
    /// Inline Markdown.
    pub text: String,
    pub url: String,
    pub image: Option<String>,
    pub cta: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Roundup {
    pub title: Option<String>,
    pub items: Vec<RoundupItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoundupItem {
    pub headline: String,
    /// Inline Markdown.
    pub text: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agenda {
    pub title: Option<String>,
    pub items: Vec<AgendaItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgendaItem {
    /// Inline Markdown.
    pub text: String,
    pub when: Option<String>,
    pub r#where: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub title: String,
    pub url: String,
}

/// 1-based (line, column) positions of keys in the edition file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Locations {
    /// One per audience list name, in order.
    pub audience: Vec<(usize, usize)>,
    /// The first line of the essay.
    pub body_line: usize,
}

/// The file of an edition given as a slug (`2026-11-20`) or a path (`editions/x.md`).
pub fn resolve(config: &Config, arg: &str) -> PathBuf {
    let looks_like_path = arg.ends_with(".md") || arg.contains('/') || arg.contains('\\');
    if looks_like_path || Path::new(arg).is_file() && !is_slug(arg) {
        PathBuf::from(arg)
    } else {
        editions_dir(config).join(format!("{arg}.md"))
    }
}

/// The editions folder, without a leading `./` (it reads better in messages).
fn editions_dir(config: &Config) -> PathBuf {
    let dir = config.editions_dir();
    dir.strip_prefix(".").map_or(dir.clone(), Path::to_path_buf)
}

/// Every edition file in the newsletter's `editions/` folder, sorted by name.
pub fn all_paths(config: &Config) -> std::io::Result<Vec<PathBuf>> {
    let dir = editions_dir(config);
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reads and validates an edition file.
pub fn load(path: &Path) -> Result<Edition, Diagnostics> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(
            path,
            1,
            1,
            format!("cannot read edition: {e}"),
        )])
    })?;
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            let (line, column) = line_col(&text, valid);
            return Err(Diagnostics(vec![Diagnostic::error(
                path,
                line,
                column,
                "the edition is not valid UTF-8",
            )]));
        }
    };
    parse(path, &source)
}

/// Parses edition text; `path` names the file in messages and gives the slug.
pub fn parse(path: &Path, source: &str) -> Result<Edition, Diagnostics> {
    let mut v = Validator {
        path,
        source,
        fm_start: 0,
        problems: Vec::new(),
    };
    let slug = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_slug(&slug) {
        v.error_at(
            0,
            format!("the file name `{slug}` is not a usable slug: use letters, digits, `-`, `_` and `.` (it becomes part of URLs and folder names)"),
        );
    }
    if personalize::has_marker_chars(source) {
        let i = source
            .find(|c| personalize::has_marker_chars(&String::from(c)))
            .unwrap_or(0);
        v.error_at(
            i,
            "the private-use characters U+E000 and U+E001 are reserved by brief and cannot appear in an edition",
        );
    }
    let Some(split) = split_front_matter(source) else {
        v.error_at(0, "an edition starts with a `+++` line, then the TOML front matter, then another `+++` line, then the essay");
        return Err(Diagnostics(v.problems));
    };
    v.fm_start = split.front_matter.start;
    let fm_text = &source[split.front_matter.clone()];
    let fm_line_offset = line_col(source, split.front_matter.start).0 - 1;
    let fm: FrontMatter = match toml::from_str(fm_text) {
        Ok(fm) => fm,
        Err(e) => {
            v.problems
                .push(toml_error(path, fm_text, fm_line_offset, &e));
            return Err(Diagnostics(v.problems));
        }
    };
    let body = &source[split.body.clone()];
    let body_line = line_col(source, split.body.start).0;
    let edition = v.edition(fm, slug, body, split.body.start, body_line);
    if v.problems.is_empty() {
        Ok(edition)
    } else {
        Err(Diagnostics(v.problems))
    }
}

struct Split {
    front_matter: Range<usize>,
    body: Range<usize>,
}

/// Finds the front matter between the first line (`+++`) and the next `+++` line.
fn split_front_matter(source: &str) -> Option<Split> {
    let source_no_bom = source.strip_prefix('\u{FEFF}').unwrap_or(source);
    let bom = source.len() - source_no_bom.len();
    let first_end = source_no_bom
        .find('\n')
        .map_or(source_no_bom.len(), |i| i + 1);
    if source_no_bom[..first_end].trim_end() != "+++" {
        return None;
    }
    let fm_start = bom + first_end;
    let mut pos = fm_start;
    while pos < source.len() {
        let line_end = source[pos..]
            .find('\n')
            .map_or(source.len(), |i| pos + i + 1);
        if source[pos..line_end].trim_end() == "+++" {
            return Some(Split {
                front_matter: fm_start..pos,
                body: line_end..source.len(),
            });
        }
        pos = line_end;
    }
    None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Spanned<String>,
    subject: Option<Spanned<String>>,
    kicker: Option<Spanned<String>>,
    date: Spanned<Datetime>,
    send_at: Option<Spanned<Datetime>>,
    preheader: Option<Spanned<String>>,
    audience: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    editors: Vec<Spanned<String>>,
    sponsor: Option<SponsorFm>,
    roundup: Option<RoundupFm>,
    agenda: Option<AgendaFm>,
    #[serde(default)]
    read_more: Vec<LinkFm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SponsorFm {
    label: Option<Spanned<String>>,
    text: Spanned<String>,
    url: Spanned<String>,
    image: Option<Spanned<String>>,
    cta: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundupFm {
    title: Option<Spanned<String>>,
    #[serde(default)]
    items: Vec<RoundupItemFm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundupItemFm {
    headline: Spanned<String>,
    text: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgendaFm {
    title: Option<Spanned<String>>,
    #[serde(default)]
    items: Vec<AgendaItemFm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgendaItemFm {
    text: Spanned<String>,
    when: Option<Spanned<String>>,
    r#where: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkFm {
    title: Spanned<String>,
    url: Spanned<String>,
}

/// Which URLs a field accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// `https://` or `http://`.
    Web,
    /// A web URL or `mailto:` an address (links in Markdown).
    WebOrMail,
}

/// Why `url` is not acceptable, if it is not.
pub fn url_problem(url: &str, kind: UrlKind) -> Option<String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "the URL `{}` contains spaces or control characters",
            url.escape_debug()
        ));
    }
    if url.contains(['\\', '"', '<', '>']) {
        return Some(format!(
            "the URL `{url}` contains a character URLs cannot hold (\\ \" < >); percent-encode it"
        ));
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    if let Some(rest) = rest {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Some(format!("the URL `{url}` has no host"));
        }
        return None;
    }
    if kind == UrlKind::WebOrMail {
        if let Some(addr) = lower.strip_prefix("mailto:") {
            let addr = addr.split('?').next().unwrap_or("");
            return match addr.split_once('@') {
                Some((local, domain)) if !local.is_empty() && domain.contains('.') => None,
                _ => Some(format!("`{url}` is not a mailto: link to an address")),
            };
        }
        return Some(format!(
            "links must be absolute https://, http:// or mailto: URLs, not `{url}`"
        ));
    }
    Some(format!(
        "URLs must be absolute https:// or http:// URLs, not `{url}`"
    ))
}

struct Validator<'a> {
    path: &'a Path,
    source: &'a str,
    /// Byte offset of the front matter in the file.
    fm_start: usize,
    problems: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error_at(&mut self, file_offset: usize, msg: impl Into<String>) {
        self.problems.push(Diagnostic::at_offset(
            self.path,
            self.source,
            file_offset,
            msg,
        ));
    }

    /// An error at a span of the front matter.
    fn error_span(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.error_at(self.fm_start + span.start, msg);
    }

    fn pos(&self, span: &Range<usize>) -> (usize, usize) {
        line_col(self.source, self.fm_start + span.start)
    }

    /// A one-line text field: not empty (if required), no control characters.
    fn line(&mut self, key: &str, value: Spanned<String>, required: bool) -> String {
        let span = value.span();
        let text = value.into_inner();
        if required && text.trim().is_empty() {
            self.error_span(span, format!("`{key}` must not be empty"));
        } else if text.chars().any(char::is_control) {
            self.error_span(
                span,
                format!("`{key}` must be one line without control characters"),
            );
        }
        text
    }

    fn opt_line(&mut self, key: &str, value: Option<Spanned<String>>) -> Option<String> {
        value
            .map(|v| self.line(key, v, true))
            .filter(|s| !s.trim().is_empty())
    }

    fn url(&mut self, key: &str, value: Spanned<String>) -> String {
        let span = value.span();
        let url = value.into_inner();
        if let Some(problem) = url_problem(&url, UrlKind::Web) {
            self.error_span(span, format!("`{key}`: {problem}"));
        }
        url
    }

    /// Inline Markdown: a value on one TOML line or several; its links are checked.
    fn markdown(&mut self, key: &str, value: Spanned<String>, required: bool) -> String {
        let span = value.span();
        let text = value.into_inner();
        if required && text.trim().is_empty() {
            self.error_span(span.clone(), format!("`{key}` must not be empty"));
        }
        // Positions inside a TOML string do not map 1:1 to the file (escapes,
        // quotes), so problems point at the start of the value.
        let at = self.fm_start + span.start;
        for (problem, _) in markdown_problems(&text) {
            self.error_at(at, format!("`{key}`: {problem}"));
        }
        text
    }

    fn edition(
        &mut self,
        fm: FrontMatter,
        slug: String,
        body: &str,
        body_offset: usize,
        body_line: usize,
    ) -> Edition {
        let title = self.line("title", fm.title, true);
        let subject = self.opt_line("subject", fm.subject);
        let kicker = self.opt_line("kicker", fm.kicker);
        let preheader = self.opt_line("preheader", fm.preheader);

        let date_span = fm.date.span();
        let date = match date_of(fm.date.get_ref()) {
            Some(d) => d,
            None => {
                self.error_span(
                    date_span,
                    "`date` must be a plain date such as 2026-11-20 (no time)",
                );
                NaiveDate::default()
            }
        };
        let send_at = fm.send_at.and_then(|s| {
            let span = s.span();
            match date_time_of(s.get_ref()) {
                Ok(t) => Some(t),
                Err(msg) => {
                    self.error_span(span, msg);
                    None
                }
            }
        });

        let mut audience_locations = Vec::new();
        let audience = fm.audience.map(|list| {
            let list_span = list.span();
            let names = list.into_inner();
            if names.is_empty() {
                self.error_span(
                    list_span,
                    "`audience` is empty: name at least one list, or leave the key out to use the default",
                );
            }
            names
                .into_iter()
                .map(|name| {
                    let span = name.span();
                    audience_locations.push(self.pos(&span));
                    let name = name.into_inner();
                    if !is_list_name(&name) {
                        self.error_span(
                            span,
                            format!("`{name}` is not a list name: use letters, digits, `-` and `_` (the list is subscribers/<name>.csv)"),
                        );
                    }
                    name
                })
                .collect()
        });

        let editors = fm
            .editors
            .into_iter()
            .map(|e| self.line("editors", e, true))
            .collect();

        let sponsor = fm.sponsor.map(|s| Sponsor {
            label: self.opt_line("sponsor.label", s.label),
            text: self.markdown("sponsor.text", s.text, true),
            url: self.url("sponsor.url", s.url),
            image: s.image.map(|i| self.url("sponsor.image", i)),
            cta: self.opt_line("sponsor.cta", s.cta),
        });

        let roundup = fm.roundup.map(|r| Roundup {
            title: self.opt_line("roundup.title", r.title),
            items: r
                .items
                .into_iter()
                .map(|item| RoundupItem {
                    headline: self.line("roundup.items.headline", item.headline, true),
                    text: item
                        .text
                        .map(|t| self.markdown("roundup.items.text", t, false))
                        .filter(|t| !t.trim().is_empty()),
                    url: item.url.map(|u| self.url("roundup.items.url", u)),
                })
                .collect(),
        });

        let agenda = fm.agenda.map(|a| Agenda {
            title: self.opt_line("agenda.title", a.title),
            items: a
                .items
                .into_iter()
                .map(|item| AgendaItem {
                    text: self.markdown("agenda.items.text", item.text, true),
                    when: self.opt_line("agenda.items.when", item.when),
                    r#where: self.opt_line("agenda.items.where", item.r#where),
                })
                .collect(),
        });

        let read_more = fm
            .read_more
            .into_iter()
            .map(|l| Link {
                title: self.line("read_more.title", l.title, true),
                url: self.url("read_more.url", l.url),
            })
            .collect();

        if body.trim().is_empty() {
            self.error_at(
                body_offset,
                "the essay (the Markdown after the front matter) is empty",
            );
        }
        for (problem, offset) in markdown_problems(body) {
            self.error_at(body_offset + offset, problem);
        }

        Edition {
            slug,
            path: self.path.to_path_buf(),
            title,
            subject,
            kicker,
            date,
            send_at,
            preheader,
            audience,
            editors,
            sponsor,
            roundup,
            agenda,
            read_more,
            body: body.to_string(),
            locations: Locations {
                audience: audience_locations,
                body_line,
            },
        }
    }
}

fn is_list_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

fn date_of(dt: &Datetime) -> Option<NaiveDate> {
    match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => {
            NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
        }
        _ => None,
    }
}

fn date_time_of(dt: &Datetime) -> Result<DateTime<FixedOffset>, &'static str> {
    if dt.date.is_none() || dt.time.is_none() {
        return Err(
            "`send_at` must be a date and time with a UTC offset, e.g. 2026-11-20T07:00:00+01:00",
        );
    }
    if dt.offset.is_none() {
        return Err("`send_at` needs a UTC offset (`Z` or e.g. `+01:00`): without one the time is ambiguous");
    }
    DateTime::parse_from_rfc3339(&dt.to_string())
        .map_err(|_| "`send_at` is not a valid RFC 3339 date and time")
}

/// Problems in Markdown text (bad link destinations, excessive nesting), each with
/// the byte offset where it starts.
pub fn markdown_problems(text: &str) -> Vec<(String, usize)> {
    let mut problems = Vec::new();
    let mut depth = 0usize;
    let mut too_deep_reported = false;
    for (event, range) in Parser::new_ext(text, markdown_options()).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                depth += 1;
                if depth > MAX_MARKDOWN_DEPTH && !too_deep_reported {
                    too_deep_reported = true;
                    problems.push((
                        format!("Markdown nested more than {MAX_MARKDOWN_DEPTH} levels deep (quotes or lists)"),
                        range.start,
                    ));
                }
                match tag {
                    Tag::Link { dest_url, .. } => {
                        if let Some(p) = url_problem(&dest_url, UrlKind::WebOrMail) {
                            problems.push((p, range.start));
                        }
                    }
                    Tag::Image { dest_url, .. } => {
                        if let Some(p) = url_problem(&dest_url, UrlKind::Web) {
                            problems.push((format!("image: {p}"), range.start));
                        }
                    }
                    _ => {}
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    problems
}

/// The Markdown dialect of editions: CommonMark plus strikethrough.
pub fn markdown_options() -> Options {
    Options::ENABLE_STRIKETHROUGH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> Result<Edition, Diagnostics> {
        parse(Path::new("editions/e.md"), src)
    }

    #[test]
    fn minimal_edition_parses() {
        let e = parse_str("+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\nHello.\n").unwrap();
        assert_eq!(e.slug, "e");
        assert_eq!(e.title, "T");
        assert_eq!(e.date, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
        assert_eq!(e.body, "Hello.\n");
        assert_eq!(e.locations.body_line, 5);
    }

    #[test]
    fn javascript_link_in_essay_is_located() {
        let src = "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\nHello.\n\nSee [this](javascript:alert(1)).\n";
        let err = parse_str(src).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!((err.0[0].line, err.0[0].column), (7, 5));
    }

    #[test]
    fn send_at_requires_offset() {
        let src = "+++\ntitle = \"T\"\ndate = 2026-11-20\nsend_at = 2026-11-20T07:00:00\n+++\nx\n";
        let err = parse_str(src).unwrap_err();
        assert_eq!((err.0[0].line, err.0[0].column), (4, 11));
        assert!(err.0[0].message.contains("offset"));
    }

    #[test]
    fn url_rules() {
        assert!(url_problem("https://example.org/x", UrlKind::Web).is_none());
        assert!(url_problem("HTTP://example.org", UrlKind::Web).is_none());
        assert!(url_problem("javascript:alert(1)", UrlKind::WebOrMail).is_some());
        assert!(url_problem("/relative", UrlKind::Web).is_some());
        assert!(url_problem("https://", UrlKind::Web).is_some());
        assert!(url_problem("mailto:a@example.org", UrlKind::WebOrMail).is_none());
        assert!(url_problem("mailto:a@example.org", UrlKind::Web).is_some());
        assert!(url_problem("https://exa mple.org", UrlKind::Web).is_some());
    }
}
