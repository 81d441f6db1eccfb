//! The template set. The defaults are the files of this repository's `templates/`
//! folder, built into the binary; a newsletter overrides any of them by putting a file
//! of the same name in its own `templates/` folder.

use crate::diag::{nearest, Diagnostic};
use crate::personalize::{escape_value, Escape};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, TemplateError, TemplateErrorReason,
};
use std::path::{Path, PathBuf};

/// Which registry a template belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The MJML layout (the entry point of the HTML part).
    Layout,
    /// An MJML partial, used as `{{> name}}`.
    Partial,
    /// The plain-text part.
    Text,
}

/// A default template.
pub struct DefaultTemplate {
    /// Name in handlebars (`layout`, `header`, …, `text`).
    pub name: &'static str,
    /// File name under `templates/`.
    pub file: &'static str,
    pub kind: Kind,
    pub source: &'static str,
}

macro_rules! default_template {
    ($name:literal, $kind:expr, $file:literal) => {
        DefaultTemplate {
            name: $name,
            file: $file,
            kind: $kind,
            source: include_str!(concat!("../../templates/", $file)),
        }
    };
}

/// The default template set (the sample newsletter's own templates).
pub const DEFAULTS: &[DefaultTemplate] = &[
    default_template!("layout", Kind::Layout, "layout.mjml.hbs"),
    default_template!("preheader", Kind::Partial, "preheader.mjml.hbs"),
    default_template!("header", Kind::Partial, "header.mjml.hbs"),
    default_template!("sponsor", Kind::Partial, "sponsor.mjml.hbs"),
    default_template!("essay", Kind::Partial, "essay.mjml.hbs"),
    default_template!("roundup", Kind::Partial, "roundup.mjml.hbs"),
    default_template!("agenda", Kind::Partial, "agenda.mjml.hbs"),
    default_template!("credit", Kind::Partial, "credit.mjml.hbs"),
    default_template!("read_more", Kind::Partial, "read_more.mjml.hbs"),
    default_template!("footer", Kind::Partial, "footer.mjml.hbs"),
    default_template!("text", Kind::Text, "email.txt.hbs"),
];

/// A template in use: the default or the newsletter's override.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: &'static str,
    pub kind: Kind,
    /// `templates/<file>` in the newsletter folder (whether or not it exists there).
    pub path: PathBuf,
    pub text: String,
    /// True if the text comes from the newsletter's folder.
    pub overridden: bool,
}

impl Source {
    /// How messages name this template: its file, with "(built in)" for a default.
    pub fn display(&self) -> String {
        let path = self.path.display();
        if self.overridden {
            path.to_string()
        } else {
            format!("{path} (built in)")
        }
    }
}

/// Reads the template set for a newsletter whose templates folder is `dir`.
/// Returns the sources and problems (unreadable overrides, unknown files).
pub fn load_sources(dir: &Path) -> (Vec<Source>, Vec<Diagnostic>) {
    // "./templates/x" reads better as "templates/x" in messages.
    let dir = dir.strip_prefix(".").unwrap_or(dir);
    let mut problems = Vec::new();
    let mut sources = Vec::with_capacity(DEFAULTS.len());
    for d in DEFAULTS {
        let path = dir.join(d.file);
        let (text, overridden) = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                // CRLF would reach mrml, which cannot parse it in some elements.
                Ok(text) => (text.replace("\r\n", "\n"), true),
                Err(_) => {
                    problems.push(Diagnostic::error(
                        &path,
                        1,
                        1,
                        "the template is not valid UTF-8",
                    ));
                    (d.source.to_string(), true)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (d.source.to_string(), false),
            Err(e) => {
                problems.push(Diagnostic::error(
                    &path,
                    1,
                    1,
                    format!("cannot read template: {e}"),
                ));
                (d.source.to_string(), true)
            }
        };
        sources.push(Source {
            name: d.name,
            kind: d.kind,
            path,
            text,
            overridden,
        });
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let known: Vec<&str> = DEFAULTS.iter().map(|d| d.file).collect();
        let mut unknown: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !known.contains(&n) && !n.starts_with('.'))
            })
            .collect();
        unknown.sort();
        for path in unknown {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let hint = match nearest(name, &known) {
                Some(best) => format!(" (did you mean `{best}`?)"),
                None => format!(" (templates are: {})", known.join(", ")),
            };
            problems.push(Diagnostic::warning(
                &path,
                1,
                1,
                format!("not a brief template, so it is not used{hint}"),
            ));
        }
    }
    (sources, problems)
}

/// The two registries, MJML (values HTML-escaped) and text (values as typed), both
/// strict: a misspelled variable is an error, not an empty string.
pub struct Registries {
    pub html: Handlebars<'static>,
    pub text: Handlebars<'static>,
    /// The layout as registered, with its plain `{{> partial}}` calls inlined.
    pub layout: Inlined,
}

/// The layout with the partials it calls plainly (`{{> name}}`) pasted in. handlebars
/// deep-copies the whole template data at every partial call; pasting them in once
/// at load time makes rendering several times faster. Calls with arguments are left
/// to handlebars.
#[derive(Debug, Clone, Default)]
pub struct Inlined {
    pub text: String,
    /// Where each piece of `text` comes from: (start in `text`, source index, start in
    /// that source), in order.
    segments: Vec<(usize, usize, usize)>,
    /// The sources pasted in.
    used: Vec<usize>,
}

impl Inlined {
    /// The source (index) and byte offset in it of a 1-based line and column of the
    /// inlined layout.
    pub fn origin(&self, line: usize, column: usize) -> Option<(usize, usize)> {
        let offset = offset_of(&self.text, line, column)?;
        let &(start, source, source_start) = self
            .segments
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= offset)?;
        Some((source, source_start + (offset - start)))
    }
}

/// Byte offset of a 1-based line and column (in characters).
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)?
    };
    let rest = &text[line_start..];
    Some(
        line_start
            + rest
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i),
    )
}

/// Builds both registries. With `trace`, each inlined partial is wrapped in
/// `<!--brief-template:NAME-->` comments (see `Composer::compose_traced`).
pub fn registries(sources: &[Source], trace: bool) -> Result<Registries, Vec<Diagnostic>> {
    let mut html = Handlebars::new();
    html.set_strict_mode(true);
    html.set_prevent_indent(true);
    // The same escaping as the personalization seam, so a value rendered here and a
    // value substituted for a marker later come out byte for byte the same.
    html.register_escape_fn(|s| escape_value(s, Escape::Html).into_owned());
    let mut text = Handlebars::new();
    text.set_strict_mode(true);
    text.set_prevent_indent(true);
    text.register_escape_fn(handlebars::no_escape);
    text.register_helper("underline", Box::new(underline));

    // Fast path: the layout with its partials pasted in, parsed once; the partials
    // themselves only if something still calls them (with arguments, say).
    let mut layout = Inlined::default();
    if let Some(index) = sources.iter().position(|s| s.kind == Kind::Layout) {
        inline(sources, index, trace, 0, &mut layout);
    }
    let layout_name = sources
        .iter()
        .find(|s| s.kind == Kind::Layout)
        .map(|s| s.name);
    let fast =
        layout_name.is_some_and(|name| html.register_template_string(name, &layout.text).is_ok());
    let mut problems = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let result = match s.kind {
            Kind::Layout if fast => Ok(()),
            Kind::Partial if fast && !layout.text.contains("{{>") && layout.used.contains(&i) => {
                Ok(())
            }
            Kind::Layout => html.register_template_string(s.name, &s.text),
            Kind::Partial => html.register_partial(s.name, &s.text),
            Kind::Text => text.register_template_string(s.name, &s.text),
        };
        if let Err(e) = result {
            problems.push(template_error(s, &e));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if !fast {
        // Every part parses on its own but not pasted together: keep the layout as
        // written (already registered above); positions need no mapping then.
        layout = Inlined::default();
    }
    Ok(Registries { html, text, layout })
}

/// Appends source `index` to `out`, pasting in the partials it calls plainly.
fn inline(sources: &[Source], index: usize, trace: bool, depth: usize, out: &mut Inlined) {
    out.used.push(index);
    let text = &sources[index].text;
    let mut copied = 0;
    let mut search = 0;
    while let Some(at) = text[search..].find("{{>").map(|i| search + i) {
        search = at + 3;
        let after = &text[at + 3..];
        let name_start = after.len() - after.trim_start_matches(' ').len();
        let name_len = after[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len() - name_start);
        let name = &after[name_start..name_start + name_len];
        let tail = after[name_start + name_len..].trim_start_matches(' ');
        if name.is_empty() || !tail.starts_with("}}") || depth > 8 {
            continue;
        }
        let end = at + 3 + (after.len() - tail.len()) + 2;
        let Some(partial) = sources
            .iter()
            .position(|s| s.kind == Kind::Partial && s.name == name)
        else {
            continue;
        };
        out.segments.push((out.text.len(), index, copied));
        out.text.push_str(&text[copied..at]);
        if trace {
            out.text
                .push_str(&format!("<!--{}{name}-->", super::TRACE_OPEN));
        }
        inline(sources, partial, trace, depth + 1, out);
        if trace {
            out.text.push_str(&format!("<!--{}-->", super::TRACE_CLOSE));
        }
        copied = end;
        search = end;
    }
    out.segments.push((out.text.len(), index, copied));
    out.text.push_str(&text[copied..]);
}

fn template_error(source: &Source, e: &TemplateError) -> Diagnostic {
    let (line, column) = e.pos().unwrap_or((1, 1));
    let reason = match e.reason() {
        // handlebars lists every token it could have expected: not helpful.
        TemplateErrorReason::InvalidSyntax(_) => {
            "invalid handlebars syntax (a `{{` without its `}}`, or a block such as `{{#if}}` without its `{{/if}}`)".to_string()
        }
        other => other.to_string(),
    };
    Diagnostic::error(
        source.display(),
        line,
        column,
        format!("template does not parse: {reason}"),
    )
}

/// A render error, located in the template it happened in (through the inlined
/// layout when it happened there).
pub fn render_error(
    sources: &[Source],
    layout: &Inlined,
    fallback: &Source,
    e: &RenderError,
) -> Diagnostic {
    let mut source = e
        .template_name
        .as_deref()
        .and_then(|n| sources.iter().find(|s| s.name == n))
        .unwrap_or(fallback);
    let mut line = e.line_no.unwrap_or(1);
    let mut column = e.column_no.unwrap_or(1);
    if source.kind == Kind::Layout && !layout.text.is_empty() {
        if let Some((index, offset)) = e.line_no.and_then(|l| layout.origin(l, column)) {
            source = &sources[index];
            (line, column) = crate::diag::line_col(&source.text, offset);
        }
    }
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(var)) => {
            format!("`{var}` does not exist (templates are strict: check the spelling, or guard it with {{{{#if}}}})")
        }
        RenderErrorReason::PartialNotFound(name) => {
            let names: Vec<&str> = sources
                .iter()
                .filter(|s| s.kind == Kind::Partial)
                .map(|s| s.name)
                .collect();
            match nearest(name, &names) {
                Some(best) => format!("there is no partial `{name}` (did you mean `{best}`?)"),
                None => format!(
                    "there is no partial `{name}` (partials: {})",
                    names.join(", ")
                ),
            }
        }
        other => other.to_string(),
    };
    Diagnostic::error(source.display(), line, column, message)
}

/// `{{underline text}}`: a row of `-` as long as the text (at most 78).
fn underline(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let text = h
        .param(0)
        .and_then(|p| p.value().as_str())
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("underline", 0))?;
    out.write(&"-".repeat(text.chars().count().min(super::text::WIDTH)))?;
    Ok(())
}
