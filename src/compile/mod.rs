//! Compile: the composed MJML, linted by brief (mrml does not validate), turned into
//! HTML by mrml once per edition. The HTML and text still carry personalization
//! markers; delivery fills them in per recipient.

pub mod guarantee;
pub mod lint;

use crate::compose::{Composed, Composer, RecipientValues, TRACE_CLOSE, TRACE_OPEN};
use crate::config::Config;
use crate::diag::{line_col, Diagnostic, Diagnostics};
use crate::edition::{self, Edition};
use crate::tracking::{Rewriter, TrackedLink};
use anyhow::Result;
use std::path::PathBuf;

/// Gmail clips messages whose HTML is larger than this.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

/// An edition ready for delivery: compiled once, personalized per recipient.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub slug: String,
    pub edition: Edition,
    pub subject: String,
    pub preheader: String,
    pub mjml: String,
    /// HTML with markers for `unsubscribe_url` and `subscriber.*`.
    pub html: String,
    /// The text part with the same markers.
    pub text: String,
    pub warnings: Vec<Diagnostic>,
    /// The tracked links in `html` and `text` (`[tracking]`), for the store.
    pub links: Vec<TrackedLink>,
}

/// Loads, composes and compiles an edition (a slug or a path). `columns` are the
/// extra subscriber columns (besides `email` and `name`) templates may use.
pub fn build(config: &Config, edition_arg: &str, columns: &[String]) -> Result<Compiled> {
    let path = edition::resolve(config, edition_arg);
    let edition = edition::load(&path)?;
    let composer = Composer::new(config)?;
    let mut compiled = compile_edition(config, &composer, edition, columns)?;
    compiled
        .warnings
        .splice(0..0, composer.warnings.iter().cloned());
    Ok(compiled)
}

/// The composed MJML of an edition (with markers), without compiling it: what `build` still writes when compiling fails, so the positions in
/// the error messages can be looked up. Returns the slug and the MJML.
pub fn composed_mjml(
    config: &Config,
    edition_arg: &str,
    columns: &[String],
) -> Option<(String, String)> {
    let edition = edition::load(&edition::resolve(config, edition_arg)).ok()?;
    let composer = Composer::new(config).ok()?;
    let composed = compose(config, &composer, &edition, columns).ok()?.0;
    Some((edition.slug, composed.mjml))
}

/// Composes and compiles a loaded edition with an already loaded template set.
pub fn compile_edition(
    config: &Config,
    composer: &Composer,
    edition: Edition,
    columns: &[String],
) -> Result<Compiled, Diagnostics> {
    let personal = RecipientValues::markers(columns);
    let (composed, links) = compose(config, composer, &edition, columns)?;
    let output = compile_mjml(&composed.mjml).map_err(|findings| {
        Diagnostics(locate(
            config,
            composer,
            &edition,
            &personal,
            &composed.mjml,
            &findings,
        ))
    })?;
    let missing = guarantee::check(config, composer.sources(), &output.html, &composed.text);
    if !missing.is_empty() {
        return Err(Diagnostics(missing));
    }
    let mut warnings = Vec::new();
    if !output.findings.is_empty() {
        warnings = locate(
            config,
            composer,
            &edition,
            &personal,
            &composed.mjml,
            &output.findings,
        );
    }
    if output.html.len() > GMAIL_CLIP_BYTES {
        warnings.push(Diagnostic::warning(
            &edition.path,
            1,
            1,
            format!(
                "the HTML is {} KB: Gmail clips messages over 102 KB (shorten the edition or the templates)",
                output.html.len().div_ceil(1024)
            ),
        ));
    }
    Ok(Compiled {
        slug: edition.slug.clone(),
        subject: composed.subject,
        preheader: composed.preheader,
        mjml: composed.mjml,
        html: output.html,
        text: composed.text,
        warnings,
        edition,
        links,
    })
}

/// Composes with markers, the links rewritten when `[tracking]` asks for it (once per
/// edition: every reader gets the same links).
fn compose(
    config: &Config,
    composer: &Composer,
    edition: &Edition,
    columns: &[String],
) -> Result<(Composed, Vec<TrackedLink>), Diagnostics> {
    let personal = RecipientValues::markers(columns);
    let rewriter = Rewriter::new(config, &edition.slug);
    let composed = if rewriter.is_active() {
        composer.compose_tracked(config, edition, &personal, &rewriter)?
    } else {
        composer.compose(config, edition, &personal)?
    };
    Ok((composed, rewriter.into_links()))
}

/// A problem in the MJML (found by the lint or by mrml), at a byte offset of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub offset: usize,
    pub message: String,
    pub error: bool,
    /// The text brief looked at when it found the problem (`<mj-foo`, `colour=`), to
    /// find it again in a template.
    pub snippet: String,
}

/// HTML from MJML, with the non-fatal findings (lint warnings, mrml warnings).
#[derive(Debug, Clone)]
pub struct Output {
    pub html: String,
    pub findings: Vec<Finding>,
}

/// Lints and compiles MJML. On error, returns every finding (errors and warnings).
pub fn compile_mjml(mjml: &str) -> Result<Output, Vec<Finding>> {
    let normalized;
    let mjml = if mjml.contains('\r') {
        normalized = mjml.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        mjml
    };
    let (mut findings, edits) = lint::lint_and_normalize(mjml);
    if findings.iter().any(|f| f.error) {
        return Err(findings);
    }
    let normalized_mjml;
    let mjml = if edits.is_empty() {
        mjml
    } else {
        normalized_mjml = lint::apply(mjml, &edits);
        normalized_mjml.as_str()
    };
    let parsed = match mrml::parse(mjml) {
        Ok(p) => p,
        Err(e) => {
            findings.push(Finding {
                offset: lint::original_offset(&edits, parse_error_offset(&e)),
                message: format!("mrml cannot parse the MJML: {e}"),
                error: true,
                snippet: String::new(),
            });
            return Err(findings);
        }
    };
    for w in &parsed.warnings {
        findings.push(Finding {
            offset: lint::original_offset(&edits, w.span.start),
            message: format!("mrml: {}", w.kind),
            error: false,
            snippet: mjml
                .get(w.span.start..w.span.end)
                .unwrap_or("")
                .chars()
                .take(40)
                .collect(),
        });
    }
    let options = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        social_icon_origin: None,
        // No web fonts: nothing third-party is loaded by the email.
        fonts: Default::default(),
    };
    match parsed.element.render(&options) {
        Ok(html) => Ok(Output {
            html: hide_preview_plainly(restore_markers(html)),
            findings,
        }),
        Err(e) => {
            findings.push(Finding {
                offset: 0,
                message: format!("mrml cannot render the MJML: {e}"),
                error: true,
                snippet: String::new(),
            });
            Err(findings)
        }
    }
}

/// How mrml hides the `mj-preview` text: white, 1 px, on the white page, which
/// SpamAssassin scores as hidden text (HTML_FONT_LOW_CONTRAST).
const MRML_PREVIEW_STYLE: &str = "display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;";
/// The same text hidden without a colour or size trick (`mso-hide` for Outlook).
const PREVIEW_STYLE: &str =
    "display:none;max-height:0px;max-width:0px;overflow:hidden;mso-hide:all;";

/// The preview text hidden the way no contrast rule fires on, whatever the templates.
fn hide_preview_plainly(html: String) -> String {
    let mrml_div = format!("<div style=\"{MRML_PREVIEW_STYLE}\">");
    if !html.contains(&mrml_div) {
        return html;
    }
    html.replacen(&mrml_div, &format!("<div style=\"{PREVIEW_STYLE}\">"), 1)
}

/// mrml prints attribute values with Rust's `{:?}`, so a marker character in an
/// attribute (`href="<marker>"`) comes out as the text `\u{e000}`. This puts the
/// markers back. Only inside tags, and only where the backslash is mrml's own (an odd
/// run: a backslash typed in edition text is printed doubled), so no text typed in an
/// edition can become a marker.
fn restore_markers(html: String) -> String {
    const ESCAPES: [(&str, char); 2] = [("\\u{e000}", '\u{E000}'), ("\\u{e001}", '\u{E001}')];
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(i) = html[from..].find("\\u{e00").map(|i| from + i) {
        from = i + 1;
        let Some((text, marker)) = ESCAPES.iter().find(|(t, _)| html[i..].starts_with(t)) else {
            continue;
        };
        let before = &html[..i];
        let own_backslash = before.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 0;
        let in_tag = before
            .rfind(['<', '>'])
            .is_some_and(|j| before.as_bytes()[j] == b'<');
        if own_backslash && in_tag {
            out.push_str(&html[copied..i]);
            out.push(*marker);
            copied = i + text.len();
            from = copied;
        }
    }
    if copied == 0 {
        return html;
    }
    out.push_str(&html[copied..]);
    out
}

fn parse_error_offset(e: &mrml::prelude::parser::Error) -> usize {
    use mrml::prelude::parser::Error as E;
    match e {
        E::UnexpectedElement { position, .. }
        | E::UnexpectedToken { position, .. }
        | E::MissingAttribute { position, .. }
        | E::InvalidAttribute { position, .. }
        | E::InvalidFormat { position, .. }
        | E::IncludeLoaderError { position, .. } => position.start,
        _ => 0,
    }
}

/// Turns findings in the composed MJML into diagnostics that name the template the
/// problem comes from (found by composing again with each partial's output between
/// trace comments) and the line in it, with the position in the composed MJML.
fn locate(
    config: &Config,
    composer: &Composer,
    edition: &Edition,
    personal: &RecipientValues,
    mjml: &str,
    findings: &[Finding],
) -> Vec<Diagnostic> {
    let traced = composer.compose_traced(config, edition, personal);
    let traced_findings: Option<Vec<Finding>> = traced.as_deref().map(|t| {
        let (mut f, edits) = lint::lint_and_normalize(t);
        if !f.iter().any(|x| x.error) {
            // Mirrors compile_mjml: mrml warnings come after the lint's.
            if let Ok(p) = mrml::parse(lint::apply(t, &edits)) {
                f.extend(p.warnings.iter().map(|w| Finding {
                    offset: lint::original_offset(&edits, w.span.start),
                    message: String::new(),
                    error: false,
                    snippet: String::new(),
                }));
            }
        }
        f
    });
    findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (mline, mcol) = line_col(mjml, f.offset);
            // Which template, and which occurrence of the snippet in its own output:
            // the finding points at that occurrence in the template (or at the last
            // one there is, for output repeated by `{{#each}}`).
            let (template, nth) = match (&traced, &traced_findings) {
                (Some(t), Some(tf)) if tf.len() == findings.len() => {
                    let (name, start) = template_at(t, tf[i].offset);
                    (name, occurrences_before(t, start, tf[i].offset, &f.snippet))
                }
                _ => ("layout", 0),
            };
            let source = composer
                .sources()
                .iter()
                .find(|s| s.name == template)
                .or_else(|| composer.sources().first());
            let (file, line, column) = match source {
                Some(s) => {
                    let found = s.text.match_indices(f.snippet.as_str());
                    let at = found.clone().nth(nth).or_else(|| found.last());
                    let (line, column) = match at.filter(|_| !f.snippet.is_empty()) {
                        Some((off, _)) => line_col(&s.text, off),
                        None => (1, 1),
                    };
                    (s.display(), line, column)
                }
                None => (edition.path.display().to_string(), 1, 1),
            };
            let message = format!(
                "{} (composed MJML of {}, line {mline}, column {mcol})",
                f.message, edition.slug
            );
            let d = Diagnostic::error(PathBuf::from(file), line, column, message);
            if f.error {
                d
            } else {
                Diagnostic {
                    severity: crate::diag::Severity::Warning,
                    ..d
                }
            }
        })
        .collect()
}

/// The innermost partial whose output contains `offset` of the traced MJML, and the
/// offset where that output starts (`layout` and 0 outside every partial).
fn template_at(traced: &str, offset: usize) -> (&str, usize) {
    let open = format!("<!--{TRACE_OPEN}");
    let close = format!("<!--{TRACE_CLOSE}-->");
    let mut stack: Vec<(&str, usize)> = Vec::new();
    let mut pos = 0;
    let head = &traced[..offset.min(traced.len())];
    while let Some(i) = head[pos..].find("<!--") {
        let at = pos + i;
        let rest = &head[at..];
        if let Some(name_rest) = rest.strip_prefix(open.as_str()) {
            if let Some(end) = name_rest.find("-->") {
                stack.push((&name_rest[..end], at + open.len() + end + 3));
            }
        } else if rest.starts_with(close.as_str()) {
            stack.pop();
        }
        pos = at + 4;
    }
    stack.last().copied().unwrap_or(("layout", 0))
}

/// How often `snippet` occurs in the traced MJML from `start` to `offset`, leaving out
/// the output of the partials called in between (it is not this template's).
fn occurrences_before(traced: &str, start: usize, offset: usize, snippet: &str) -> usize {
    if snippet.is_empty() {
        return 0;
    }
    let open = format!("<!--{TRACE_OPEN}");
    let close = format!("<!--{TRACE_CLOSE}-->");
    let region = &traced[start.min(offset)..offset.min(traced.len())];
    let (mut depth, mut count, mut pos) = (0usize, 0, 0);
    loop {
        let next = region[pos..].find("<!--").map(|i| pos + i);
        let segment = &region[pos..next.unwrap_or(region.len())];
        if depth == 0 {
            count += segment.matches(snippet).count();
        }
        let Some(at) = next else { break };
        let rest = &region[at..];
        if rest.starts_with(open.as_str()) {
            depth += 1;
        } else if rest.starts_with(close.as_str()) {
            depth = depth.saturating_sub(1);
        } else if depth == 0 {
            count += usize::from(rest.starts_with(snippet));
        }
        pos = at + 4;
    }
    count
}
