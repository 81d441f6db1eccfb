//! The template set. The defaults are the files of this repository's `templates/`
//! folder, built into the binary; a newsletter overrides any of them by putting a file
//! of the same name in its own `templates/` folder.

use crate::diag::{nearest, Diagnostic};
use crate::personalize::{escape_value, Escape};
use handlebars::template::TemplateElement;
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, Template, TemplateError, TemplateErrorReason,
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
        // The correction message's templates are read by `correct`.
        let known: Vec<&str> = DEFAULTS
            .iter()
            .map(|d| d.file)
            .chain(crate::correct::TEMPLATE_FILES)
            .chain(crate::serve::SIGNUP_TEMPLATE_FILES)
            .collect();
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
}

/// Lines in the layout as registered are `(source index + 1) * LINE_BASE + line`, so a
/// render error names the template (partial) it happened in.
const LINE_BASE: usize = 1_000_000;

/// Builds both registries. Every template is parsed on its own (positions in errors
/// are its own); then the partials that the layout calls plainly (`{{> name}}`) are
/// spliced into the layout's parsed form: handlebars deep-copies the whole template
/// data at every partial call, and splicing avoids that (rendering gets several times
/// faster). With `trace`, each spliced partial is wrapped in
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

    let mut problems = Vec::new();
    for s in sources {
        let result = match s.kind {
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
    for (index, s) in sources.iter().enumerate() {
        let registry = if s.kind == Kind::Text {
            &mut text
        } else {
            &mut html
        };
        if let Some(parsed) = registry.get_template(s.name) {
            let spliced = if s.kind == Kind::Layout {
                splice(parsed, index, sources, registry, trace, 0)
            } else {
                encode_lines(parsed, index)
            };
            registry.register_template(s.name, spliced);
        }
    }
    Ok(Registries { html, text })
}

/// A copy of `t` (from source `index`) with plain partial calls replaced by the
/// partials' elements, and every line encoded with its source.
fn splice(
    t: &Template,
    index: usize,
    sources: &[Source],
    registry: &Handlebars<'static>,
    trace: bool,
    depth: usize,
) -> Template {
    let mut out = Template::default();
    out.name.clone_from(&t.name);
    for (i, element) in t.elements.iter().enumerate() {
        let mapping = t.mapping.get(i).cloned().map(|mut m| {
            m.0 += (index + 1) * LINE_BASE;
            m
        });
        let push = |out: &mut Template, e: TemplateElement| {
            out.elements.push(e);
            out.mapping.extend(mapping.clone());
        };
        match element {
            TemplateElement::PartialExpression(call)
                if call.params.is_empty()
                    && call.hash.is_empty()
                    && call.template.is_none()
                    && depth < 8 =>
            {
                let target = call.name.as_name().and_then(|name| {
                    let at = sources
                        .iter()
                        .position(|s| s.kind == Kind::Partial && s.name == name)?;
                    Some((at, registry.get_template(name)?))
                });
                let Some((at, partial)) = target else {
                    push(&mut out, element.clone());
                    continue;
                };
                let name = sources[at].name;
                if trace {
                    push(
                        &mut out,
                        TemplateElement::RawString(format!("<!--{}{name}-->", super::TRACE_OPEN)),
                    );
                }
                let inner = splice(partial, at, sources, registry, trace, depth + 1);
                out.elements.extend(inner.elements);
                out.mapping.extend(inner.mapping);
                if trace {
                    push(
                        &mut out,
                        TemplateElement::RawString(format!("<!--{}-->", super::TRACE_CLOSE)),
                    );
                }
            }
            TemplateElement::HelperBlock(block) => {
                let mut block = block.clone();
                block.template = block
                    .template
                    .as_ref()
                    .map(|t| splice(t, index, sources, registry, trace, depth));
                block.inverse = block
                    .inverse
                    .as_ref()
                    .map(|t| splice(t, index, sources, registry, trace, depth));
                push(&mut out, TemplateElement::HelperBlock(block));
            }
            other => push(&mut out, encode_element(other, index)),
        }
    }
    // handlebars keeps one position per element; should some be missing, positions
    // are dropped rather than shifted onto the wrong elements.
    if out.mapping.len() != out.elements.len() {
        out.mapping.clear();
    }
    out
}

/// `t` with its lines (and those of nested blocks) encoded with source `index`.
fn encode_lines(t: &Template, index: usize) -> Template {
    let mut out = t.clone();
    for m in &mut out.mapping {
        m.0 += (index + 1) * LINE_BASE;
    }
    out.elements = t
        .elements
        .iter()
        .map(|e| encode_element(e, index))
        .collect();
    out
}

fn encode_element(e: &TemplateElement, index: usize) -> TemplateElement {
    match e {
        TemplateElement::HelperBlock(block) => {
            let mut block = block.clone();
            block.template = block.template.as_ref().map(|t| encode_lines(t, index));
            block.inverse = block.inverse.as_ref().map(|t| encode_lines(t, index));
            TemplateElement::HelperBlock(block)
        }
        TemplateElement::DecoratorBlock(block) | TemplateElement::PartialBlock(block) => {
            let mut block = block.clone();
            block.template = block.template.as_ref().map(|t| encode_lines(t, index));
            match e {
                TemplateElement::DecoratorBlock(_) => TemplateElement::DecoratorBlock(block),
                _ => TemplateElement::PartialBlock(block),
            }
        }
        other => other.clone(),
    }
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

/// A render error, located in the template it happened in (lines carry their source,
/// see [`LINE_BASE`]).
pub fn render_error(sources: &[Source], fallback: &Source, e: &RenderError) -> Diagnostic {
    let mut source = e
        .template_name
        .as_deref()
        .and_then(|n| sources.iter().find(|s| s.name == n))
        .unwrap_or(fallback);
    let mut line = e.line_no.unwrap_or(1);
    if line >= LINE_BASE {
        if let Some(s) = sources.get(line / LINE_BASE - 1) {
            source = s;
        }
        line %= LINE_BASE;
    }
    let column = e.column_no.unwrap_or(1);
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

/// `{{underline text}}`: a row of `-` as wide as the text (at most the wrap width).
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
    out.write(&"-".repeat(super::text::width_of(text).min(super::text::WIDTH)))?;
    Ok(())
}
