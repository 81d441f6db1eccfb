//! brief's own MJML lint. mrml does not validate (unknown elements pass through into
//! the HTML, unknown attributes are dropped silently) and it recurses once per nesting
//! level, so the composed MJML is checked here first: known `mj-*` elements only, the
//! attributes each takes, the children each allows, no `mj-carousel` or `mj-include`,
//! no conflicting duplicate attributes, and a bound on nesting depth (elements and the
//! HTML inside `mj-text` and friends).
//!
//! Where mrml renders valid MJML differently from mjml, the lint also normalizes the
//! MJML before mrml sees it (see [`Edit`]): `alt=""` on an image without `alt`, line
//! breaks and tabs in attribute values (mrml prints them as a literal `\n`), and a bare
//! `0` in a padding (`0 25px`, which stops mrml shrinking an image to its column).

/// Deeper nesting than this is refused before mrml sees it.
pub const MAX_DEPTH: usize = 100;

pub use super::Finding;

/// A change the lint makes to the MJML before mrml parses it: `range` of the composed
/// MJML becomes `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: std::ops::Range<usize>,
    pub replacement: String,
}

/// `src` with `edits` (in document order, not overlapping) applied.
pub fn apply(src: &str, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(src.len() + edits.len() * 8);
    let mut copied = 0;
    for e in edits {
        out.push_str(&src[copied..e.range.start]);
        out.push_str(&e.replacement);
        copied = e.range.end;
    }
    out.push_str(&src[copied..]);
    out
}

/// The offset in the original MJML of `offset` in the MJML with `edits` applied.
pub fn original_offset(edits: &[Edit], offset: usize) -> usize {
    let mut shift: isize = 0;
    for e in edits {
        let start = (e.range.start as isize + shift) as usize;
        if start >= offset {
            break;
        }
        shift += e.replacement.len() as isize - e.range.len() as isize;
    }
    (offset as isize - shift).max(0) as usize
}

/// What an element may contain.
#[derive(Clone, Copy)]
enum Content {
    /// Only these elements (and whitespace, comments).
    Elements(&'static [&'static str]),
    /// Raw HTML or text up to the closing tag (`mj-text`, `mj-button`, …).
    Raw,
    /// Any `mj-*` element, with attributes not checked (`mj-attributes`).
    Defaults,
}

struct Rule {
    attributes: &'static [&'static str],
    content: Content,
}

const PADDING: &[&str] = &[
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
];
const BODY_CONTENT: &[&str] = &[
    "mj-text",
    "mj-image",
    "mj-button",
    "mj-divider",
    "mj-spacer",
    "mj-table",
    "mj-social",
    "mj-navbar",
    "mj-accordion",
    "mj-raw",
];

/// The components brief knows, their attributes (besides `css-class`, `mj-class` and
/// the padding set where it applies) and children.
fn rule(name: &str) -> Option<Rule> {
    use Content::*;
    let r = |attributes, content| {
        Some(Rule {
            attributes,
            content,
        })
    };
    match name {
        "mjml" => r(
            &["lang", "dir", "owa", "version"],
            Elements(&["mj-head", "mj-body"]),
        ),
        "mj-head" => r(
            &[],
            Elements(&[
                "mj-attributes",
                "mj-breakpoint",
                "mj-font",
                "mj-preview",
                "mj-style",
                "mj-title",
                "mj-raw",
            ]),
        ),
        "mj-attributes" => r(&[], Defaults),
        "mj-breakpoint" => r(&["width"], Elements(&[])),
        "mj-font" => r(&["name", "href"], Elements(&[])),
        "mj-preview" | "mj-title" => r(&[], Raw),
        "mj-style" => r(&["inline"], Raw),
        "mj-raw" => r(&["position"], Raw),
        "mj-body" => r(
            &["background-color", "width", "lang", "dir"],
            Elements(&["mj-section", "mj-wrapper", "mj-hero", "mj-raw"]),
        ),
        "mj-wrapper" => r(
            SECTION_ATTRS,
            Elements(&["mj-section", "mj-hero", "mj-raw"]),
        ),
        "mj-section" => r(
            SECTION_ATTRS,
            Elements(&["mj-column", "mj-group", "mj-raw"]),
        ),
        "mj-group" => r(
            &["width", "vertical-align", "background-color", "direction"],
            Elements(&["mj-column", "mj-raw"]),
        ),
        "mj-column" => r(
            &[
                "background-color",
                "inner-background-color",
                "border",
                "border-top",
                "border-right",
                "border-bottom",
                "border-left",
                "border-radius",
                "inner-border",
                "inner-border-top",
                "inner-border-right",
                "inner-border-bottom",
                "inner-border-left",
                "inner-border-radius",
                "width",
                "vertical-align",
                "direction",
            ],
            Elements(BODY_CONTENT),
        ),
        "mj-hero" => r(
            &[
                "mode",
                "height",
                "background-url",
                "background-width",
                "background-height",
                "background-position",
                "border-radius",
                "container-background-color",
                "inner-background-color",
                "inner-padding",
                "inner-padding-top",
                "inner-padding-right",
                "inner-padding-bottom",
                "inner-padding-left",
                "background-color",
                "vertical-align",
                "width",
            ],
            Elements(BODY_CONTENT),
        ),
        "mj-text" => r(
            &[
                "align",
                "color",
                "container-background-color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "height",
                "letter-spacing",
                "line-height",
                "text-decoration",
                "text-transform",
                "vertical-align",
            ],
            Raw,
        ),
        "mj-image" => r(
            &[
                "align",
                "alt",
                "border",
                "border-top",
                "border-right",
                "border-bottom",
                "border-left",
                "border-radius",
                "container-background-color",
                "fluid-on-mobile",
                "height",
                "href",
                "max-height",
                "name",
                "rel",
                "sizes",
                "src",
                "srcset",
                "target",
                "title",
                "usemap",
                "width",
                "font-size",
            ],
            Elements(&[]),
        ),
        "mj-button" => r(
            &[
                "align",
                "background-color",
                "border",
                "border-top",
                "border-right",
                "border-bottom",
                "border-left",
                "border-radius",
                "color",
                "container-background-color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "height",
                "href",
                "inner-padding",
                "letter-spacing",
                "line-height",
                "name",
                "rel",
                "target",
                "text-align",
                "text-decoration",
                "text-transform",
                "title",
                "vertical-align",
                "width",
            ],
            Raw,
        ),
        "mj-divider" => r(
            &[
                "align",
                "border-color",
                "border-style",
                "border-width",
                "container-background-color",
                "width",
            ],
            Elements(&[]),
        ),
        "mj-spacer" => r(&["container-background-color", "height"], Elements(&[])),
        "mj-table" => r(
            &[
                "align",
                "border",
                "cellpadding",
                "cellspacing",
                "color",
                "container-background-color",
                "font-family",
                "font-size",
                "font-weight",
                "line-height",
                "role",
                "table-layout",
                "width",
            ],
            Raw,
        ),
        "mj-social" => r(
            &[
                "align",
                "border-radius",
                "color",
                "container-background-color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "icon-height",
                "icon-size",
                "icon-padding",
                "inner-padding",
                "line-height",
                "mode",
                "text-decoration",
                "text-padding",
            ],
            Elements(&["mj-social-element", "mj-raw"]),
        ),
        "mj-social-element" => r(
            &[
                "align",
                "alt",
                "background-color",
                "border-radius",
                "color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "href",
                "icon-height",
                "icon-size",
                "icon-padding",
                "line-height",
                "name",
                "rel",
                "sizes",
                "src",
                "srcset",
                "target",
                "text-decoration",
                "text-padding",
                "title",
                "vertical-align",
            ],
            Raw,
        ),
        "mj-navbar" => r(
            &[
                "align",
                "base-url",
                "hamburger",
                "ico-align",
                "ico-close",
                "ico-color",
                "ico-font-family",
                "ico-font-size",
                "ico-line-height",
                "ico-open",
                "ico-padding",
                "ico-padding-top",
                "ico-padding-right",
                "ico-padding-bottom",
                "ico-padding-left",
                "ico-text-decoration",
                "ico-text-transform",
            ],
            Elements(&["mj-navbar-link", "mj-raw"]),
        ),
        "mj-navbar-link" => r(
            &[
                "color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "href",
                "letter-spacing",
                "line-height",
                "rel",
                "target",
                "text-decoration",
                "text-transform",
            ],
            Raw,
        ),
        "mj-accordion" => r(
            ACCORDION_ATTRS,
            Elements(&["mj-accordion-element", "mj-raw"]),
        ),
        "mj-accordion-element" => r(
            ACCORDION_ATTRS,
            Elements(&["mj-accordion-title", "mj-accordion-text", "mj-raw"]),
        ),
        "mj-accordion-title" | "mj-accordion-text" => r(
            &[
                "background-color",
                "color",
                "font-family",
                "font-size",
                "font-weight",
                "letter-spacing",
                "line-height",
            ],
            Raw,
        ),
        _ => None,
    }
}

const SECTION_ATTRS: &[&str] = &[
    "background-color",
    "background-position",
    "background-position-x",
    "background-position-y",
    "background-repeat",
    "background-size",
    "background-url",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-radius",
    "direction",
    "full-width",
    "text-align",
    "text-padding",
];

const ACCORDION_ATTRS: &[&str] = &[
    "border",
    "container-background-color",
    "font-family",
    "icon-align",
    "icon-height",
    "icon-position",
    "icon-unwrapped-alt",
    "icon-unwrapped-url",
    "icon-width",
    "icon-wrapped-alt",
    "icon-wrapped-url",
    "background-color",
];

/// Elements that take the padding set.
fn takes_padding(name: &str) -> bool {
    !matches!(
        name,
        "mjml"
            | "mj-head"
            | "mj-attributes"
            | "mj-breakpoint"
            | "mj-font"
            | "mj-preview"
            | "mj-title"
            | "mj-style"
            | "mj-raw"
            | "mj-body"
            | "mj-group"
    )
}

/// Explanations for elements brief refuses on purpose.
fn refused(name: &str) -> Option<&'static str> {
    match name {
        "mj-carousel" | "mj-carousel-image" => {
            Some("`mj-carousel` is not supported: mrml hides its arrows on every screen")
        }
        "mj-include" => {
            Some("`mj-include` is not supported: use a handlebars partial (a file in templates/)")
        }
        "mj-html-attributes" | "mj-selector" | "mj-html-attribute" => {
            Some("`mj-html-attributes` is not supported by mrml")
        }
        _ => None,
    }
}

/// HTML elements without a closing tag.
fn is_void(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "link"
            | "meta"
            | "source"
            | "track"
            | "wbr"
    )
}

struct Tag<'a> {
    name: &'a str,
    attributes: Vec<(&'a str, usize, Option<&'a str>)>,
    self_closing: bool,
    /// Offset just past `>`.
    end: usize,
}

/// Parses the tag that starts at `start` (`<name …>`), or None if it is malformed.
fn parse_tag(src: &str, start: usize) -> Result<Tag<'_>, (usize, String)> {
    let bytes = src.as_bytes();
    let mut i = start + 1;
    let name_start = i;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' && bytes[i] != b'/'
    {
        i += 1;
    }
    let name = &src[name_start..i];
    let mut attributes = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return Err((start, format!("`<{name}` is never closed with `>`")));
        }
        match bytes[i] {
            b'>' => {
                return Ok(Tag {
                    name,
                    attributes,
                    self_closing: false,
                    end: i + 1,
                });
            }
            b'/' if bytes.get(i + 1) == Some(&b'>') => {
                return Ok(Tag {
                    name,
                    attributes,
                    self_closing: true,
                    end: i + 2,
                });
            }
            _ => {}
        }
        let attr_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        if i == attr_start {
            return Err((i, format!("unexpected `{}` in `<{name}>`", &src[i..=i])));
        }
        let attr = &src[attr_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = None;
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let Some(close) = src[i + 1..].find(q as char) else {
                        return Err((attr_start, format!("the value of `{attr}` is never closed")));
                    };
                    value = Some(&src[i + 1..i + 1 + close]);
                    i += close + 2;
                }
                _ => {
                    let v_start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = Some(&src[v_start..i]);
                }
            }
        }
        attributes.push((attr, attr_start, value));
    }
}

/// Lints composed MJML. Findings are in document order.
pub fn lint(src: &str) -> Vec<Finding> {
    lint_and_normalize(src).0
}

/// Lints composed MJML and returns the findings with the edits that make mrml render
/// it as mjml does (see the module comment), in document order.
pub fn lint_and_normalize(src: &str) -> (Vec<Finding>, Vec<Edit>) {
    let mut l = Linter {
        src,
        findings: Vec::new(),
        edits: Vec::new(),
    };
    l.run();
    l.edits.sort_by_key(|e| e.range.start);
    (l.findings, l.edits)
}

struct Linter<'a> {
    src: &'a str,
    findings: Vec<Finding>,
    edits: Vec<Edit>,
}

impl<'a> Linter<'a> {
    fn error(&mut self, offset: usize, snippet: &str, message: String) {
        self.findings.push(Finding {
            offset,
            message,
            error: true,
            snippet: snippet.to_string(),
        });
    }

    fn edit(&mut self, range: std::ops::Range<usize>, replacement: String) {
        self.edits.push(Edit { range, replacement });
    }

    /// Normalizes the values of `tag`'s attributes (in `self.src`): line breaks and
    /// tabs become spaces; in a padding of several values a bare `0` becomes `0px`.
    fn normalize_values(&mut self, tag: &Tag<'a>) {
        for (attr, _, value) in &tag.attributes {
            let Some(v) = value else { continue };
            let start = v.as_ptr() as usize - self.src.as_ptr() as usize;
            let mut normalized = v.replace(['\r', '\n', '\t'], " ");
            if (attr.starts_with("padding") || attr.ends_with("-padding"))
                && normalized.split_whitespace().count() > 1
                && normalized.split_whitespace().any(|p| p == "0")
            {
                normalized = normalized
                    .split_whitespace()
                    .map(|p| if p == "0" { "0px" } else { p })
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            if normalized != *v {
                self.edit(start..start + v.len(), normalized);
            }
        }
    }

    fn warning(&mut self, offset: usize, snippet: &str, message: String) {
        self.findings.push(Finding {
            offset,
            message,
            error: false,
            snippet: snippet.to_string(),
        });
    }

    fn run(&mut self) {
        let src = self.src;
        // (name, offset of `<`)
        let mut stack: Vec<(&str, usize)> = Vec::new();
        let mut pos = 0;
        let mut seen_root = false;
        while pos < src.len() {
            let Some(lt) = src[pos..].find('<').map(|i| pos + i) else {
                self.stray_text(&src[pos..], pos, &stack);
                break;
            };
            self.stray_text(&src[pos..lt], pos, &stack);
            let rest = &src[lt..];
            if rest.starts_with("<!--") {
                match rest.find("-->") {
                    Some(end) => pos = lt + end + 3,
                    None => {
                        self.error(lt, "<!--", "a comment is never closed with `-->`".into());
                        return;
                    }
                }
                continue;
            }
            if let Some(after) = rest.strip_prefix("</") {
                let name_len = after
                    .find(|c: char| c == '>' || c.is_whitespace())
                    .unwrap_or(after.len());
                let name = &after[..name_len];
                let Some(gt) = rest.find('>') else {
                    self.error(
                        lt,
                        &rest[..rest.len().min(2 + name_len)],
                        format!("`</{name}` is never closed with `>`"),
                    );
                    return;
                };
                match stack.pop() {
                    Some((open, _)) if open == name => {}
                    Some((open, at)) => {
                        let (line, column) = crate::diag::line_col(src, at);
                        self.error(
                            lt,
                            &format!("</{name}"),
                            format!("`</{name}>` closes `<{open}>` (opened at line {line}, column {column}, and never closed)"),
                        );
                        return;
                    }
                    None => {
                        self.error(
                            lt,
                            &format!("</{name}"),
                            format!("`</{name}>` closes nothing"),
                        );
                        return;
                    }
                }
                pos = lt + gt + 1;
                continue;
            }
            let tag = match parse_tag(src, lt) {
                Ok(t) => t,
                Err((at, msg)) => {
                    let snippet: String = src[at..].chars().take(12).collect();
                    self.error(at, &snippet, msg);
                    return;
                }
            };
            if tag.name.starts_with('!') || tag.name.starts_with('?') {
                pos = tag.end;
                continue;
            }
            let parent = stack.last().map(|(n, _)| *n);
            if parent.is_none() {
                if seen_root || tag.name != "mjml" {
                    self.error(
                        lt,
                        &format!("<{}", tag.name),
                        format!(
                            "the document must be one `<mjml>` element, found `<{}>`",
                            tag.name
                        ),
                    );
                    return;
                }
                seen_root = true;
            }
            let content = self.check_element(&tag, lt, parent);
            if stack.len() + 1 > MAX_DEPTH {
                self.error(
                    lt,
                    &format!("<{}", tag.name),
                    format!("elements nested more than {MAX_DEPTH} levels deep"),
                );
                return;
            }
            if tag.self_closing {
                pos = tag.end;
                continue;
            }
            match content {
                Some(Content::Raw) => {
                    let close = format!("</{}", tag.name);
                    let Some(end) = src[tag.end..].find(&close).map(|i| tag.end + i) else {
                        self.error(
                            lt,
                            &format!("<{}", tag.name),
                            format!("`<{}>` is never closed", tag.name),
                        );
                        return;
                    };
                    if !self.check_raw(tag.end, end, stack.len() + 1) {
                        return;
                    }
                    let Some(gt) = src[end..].find('>') else {
                        self.error(end, &close, format!("`{close}` is never closed with `>`"));
                        return;
                    };
                    pos = end + gt + 1;
                }
                _ => {
                    stack.push((tag.name, lt));
                    pos = tag.end;
                }
            }
        }
        if let Some((name, at)) = stack.pop() {
            self.error(
                at,
                &format!("<{name}"),
                format!("`<{name}>` is never closed"),
            );
        } else if !seen_root {
            self.error(0, "", "the document has no `<mjml>` element".into());
        }
    }

    /// Text between elements: only whitespace is allowed there.
    fn stray_text(&mut self, text: &str, offset: usize, stack: &[(&str, usize)]) {
        if let Some(i) = text.find(|c: char| !c.is_whitespace()) {
            let snippet: String = text[i..].chars().take(20).collect();
            let place = stack
                .last()
                .map_or("outside `<mjml>`".to_string(), |(n, _)| {
                    format!("inside `<{n}>`")
                });
            self.error(
                offset + i,
                &snippet,
                format!("text `{}` {place}: text belongs in `<mj-text>` (or another component that takes content)", snippet.trim()),
            );
        }
    }

    /// Checks one start tag against its parent; returns what it may contain.
    fn check_element(&mut self, tag: &Tag<'a>, at: usize, parent: Option<&str>) -> Option<Content> {
        let name = tag.name;
        let snippet = format!("<{name}");
        if let Some(why) = refused(name) {
            self.error(at, &snippet, why.to_string());
            return None;
        }
        let parent_content = parent.and_then(rule).map(|r| r.content);
        // Inside mj-attributes, elements carry default attributes of any kind.
        if matches!(parent_content, Some(Content::Defaults)) && KNOWN.contains(&name) {
            self.normalize_values(tag);
            return Some(Content::Elements(&[]));
        }
        let Some(rule) = rule(name) else {
            let msg = if KNOWN.contains(&name) {
                format!("`<{name}>` belongs inside `<mj-attributes>`")
            } else if name.starts_with("mj-") {
                let known: Vec<&str> = KNOWN.to_vec();
                match crate::diag::nearest(name, &known) {
                    Some(best) => format!("unknown element `<{name}>` (did you mean `<{best}>`?)"),
                    None => format!("unknown element `<{name}>`"),
                }
            } else {
                format!("`<{name}>` is HTML: put it inside `<mj-text>` or `<mj-raw>`")
            };
            self.error(at, &snippet, msg);
            return None;
        };
        if let (Some(parent), Some(Content::Elements(allowed))) = (parent, parent_content) {
            if !allowed.contains(&name) {
                let hint = if allowed.is_empty() {
                    "it takes no children".to_string()
                } else {
                    format!("allowed: {}", allowed.join(", "))
                };
                self.error(
                    at,
                    &snippet,
                    format!("`<{name}>` is not allowed inside `<{parent}>` ({hint})"),
                );
            }
        }
        self.normalize_values(tag);
        let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
        for (attr, attr_at, value) in &tag.attributes {
            // The same value twice renders the same in mrml (last) and mjml (first).
            if seen.iter().any(|(a, v)| a == attr && v != value) {
                self.error(*attr_at, attr, format!("`{attr}` is given twice on `<{name}>` with different values (mrml keeps the last, mjml the first)"));
            }
            seen.push((attr, *value));
            let known = rule.attributes.contains(attr)
                || matches!(*attr, "css-class" | "mj-class")
                || (takes_padding(name) && PADDING.contains(attr));
            if !known {
                let mut candidates: Vec<&str> = rule.attributes.to_vec();
                candidates.push("css-class");
                if takes_padding(name) {
                    candidates.extend_from_slice(PADDING);
                }
                let hint = match crate::diag::nearest(attr, &candidates) {
                    Some(best) => format!(" (did you mean `{best}`?)"),
                    None => String::new(),
                };
                self.error(
                    *attr_at,
                    attr,
                    format!("`<{name}>` has no attribute `{attr}`{hint}"),
                );
            }
        }
        if name == "mj-image" && !seen.iter().any(|(a, _)| *a == "alt") {
            self.warning(
                at,
                &snippet,
                "`<mj-image>` has no `alt`: brief writes `alt=\"\"` as mjml does (screen readers skip the image); describe it if it carries meaning".into(),
            );
            let after_name = at + 1 + name.len();
            self.edit(after_name..after_name, " alt=\"\"".to_string());
        }
        Some(rule.content)
    }

    /// Bounds the nesting of the HTML inside a raw component. Returns false if the
    /// document must not go further.
    fn check_raw(&mut self, from: usize, to: usize, base_depth: usize) -> bool {
        let src = &self.src[from..to];
        let mut depth = base_depth;
        let mut pos = 0;
        while let Some(i) = src[pos..].find('<') {
            let at = pos + i;
            let rest = &src[at..];
            if rest.starts_with("<!--") {
                pos = rest.find("-->").map_or(src.len(), |e| at + e + 3);
                continue;
            }
            if rest.starts_with("</") {
                depth = depth.saturating_sub(1).max(base_depth);
                pos = at + 2;
                continue;
            }
            let name_len = rest[1..]
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(rest.len() - 1);
            let name = &rest[1..1 + name_len];
            if let Ok(tag) = parse_tag(self.src, from + at) {
                if tag.end <= to {
                    self.normalize_values(&tag);
                }
            }
            let gt = rest.find('>').unwrap_or(rest.len() - 1);
            let self_closing = rest[..gt].ends_with('/');
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !self_closing
                && !is_void(name)
            {
                depth += 1;
                if depth > MAX_DEPTH {
                    self.error(
                        from + at,
                        &format!("<{name}"),
                        format!("HTML nested more than {MAX_DEPTH} levels deep"),
                    );
                    return false;
                }
            }
            pos = at + 1;
        }
        true
    }
}

/// Every element name brief knows (for suggestions).
const KNOWN: &[&str] = &[
    "mjml",
    "mj-head",
    "mj-attributes",
    "mj-breakpoint",
    "mj-font",
    "mj-preview",
    "mj-title",
    "mj-style",
    "mj-raw",
    "mj-body",
    "mj-wrapper",
    "mj-section",
    "mj-group",
    "mj-column",
    "mj-hero",
    "mj-text",
    "mj-image",
    "mj-button",
    "mj-divider",
    "mj-spacer",
    "mj-table",
    "mj-social",
    "mj-social-element",
    "mj-navbar",
    "mj-navbar-link",
    "mj-accordion",
    "mj-accordion-element",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-all",
    "mj-class",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(body: &str) -> String {
        format!("<mjml><mj-body><mj-section><mj-column>{body}</mj-column></mj-section></mj-body></mjml>")
    }

    fn messages(src: &str) -> Vec<String> {
        lint(src).into_iter().map(|f| f.message).collect()
    }

    #[test]
    fn clean_document_passes() {
        assert_eq!(messages(&doc("<mj-text color=\"#000\">Hi <b>there</b><br></mj-text><mj-image src=\"https://x/y.png\" alt=\"\" />")), Vec::<String>::new());
    }

    #[test]
    fn unknown_element_attribute_and_child() {
        let m = messages(&doc("<mj-txt>x</mj-txt>"));
        assert_eq!(
            m[0],
            "unknown element `<mj-txt>` (did you mean `<mj-text>`?)"
        );
        let m = messages(&doc("<mj-text colour=\"red\">x</mj-text>"));
        assert_eq!(
            m,
            ["`<mj-text>` has no attribute `colour` (did you mean `color`?)"]
        );
        let m = messages("<mjml><mj-body><mj-column></mj-column></mj-body></mjml>");
        assert!(
            m[0].starts_with("`<mj-column>` is not allowed inside `<mj-body>`"),
            "{m:?}"
        );
    }

    #[test]
    fn image_without_alt_gets_an_empty_one_and_a_warning() {
        let src = doc("<mj-image src=\"https://x/y.png\" />");
        let (findings, edits) = lint_and_normalize(&src);
        assert_eq!(findings.len(), 1);
        assert!(!findings[0].error && findings[0].message.contains("alt=\"\""));
        assert!(apply(&src, &edits).contains("<mj-image alt=\"\" src=\"https://x/y.png\" />"));
        let m = messages(&doc("<mj-carousel></mj-carousel>"));
        assert!(m[0].contains("mj-carousel"), "{m:?}");
    }

    #[test]
    fn valid_mjml_is_accepted() {
        let src = "<mjml version=\"4.15.3\"><mj-body><mj-section><mj-column><mj-text css-class=\"a\" css-class=\"a\">x</mj-text></mj-column></mj-section></mj-body></mjml>";
        assert_eq!(messages(src), Vec::<String>::new());
        let m = messages(&doc("<mj-text css-class=\"a\" css-class=\"b\">x</mj-text>"));
        assert!(m[0].contains("with different values"), "{m:?}");
    }

    #[test]
    fn line_breaks_and_tabs_in_attributes_become_spaces() {
        let src = doc("<mj-text padding=\"0\t2px\"><p style=\"\n  color: red;\n\">a</p><span title=\"tab\there\">t</span></mj-text>");
        let (findings, edits) = lint_and_normalize(&src);
        assert!(findings.is_empty(), "{findings:?}");
        let out = apply(&src, &edits);
        assert!(out.contains("<p style=\"   color: red; \">"), "{out}");
        assert!(out.contains("title=\"tab here\""), "{out}");
        assert!(out.contains("padding=\"0px 2px\""), "{out}");
        assert!(!out.contains(['\t']) && out.lines().count() == 1);
    }

    #[test]
    fn depth_is_bounded_in_elements_and_html() {
        let deep_html = format!(
            "<mj-text>{}{}</mj-text>",
            "<div>".repeat(500),
            "</div>".repeat(500)
        );
        let m = messages(&doc(&deep_html));
        assert_eq!(
            m,
            [format!("HTML nested more than {MAX_DEPTH} levels deep")]
        );
        let deep = format!("<mjml><mj-body>{}", "<mj-wrapper>".repeat(3000));
        assert!(messages(&deep).iter().any(|m| m.contains("levels deep")));
    }

    #[test]
    fn bare_zero_padding_becomes_0px() {
        let src = doc("<mj-image src=\"https://x/y.png\" alt=\"a\" padding=\"0 25px\" />");
        let (findings, edits) = lint_and_normalize(&src);
        assert!(findings.is_empty(), "{findings:?}");
        assert!(apply(&src, &edits).contains("padding=\"0px 25px\""));
        // Also as a default in mj-attributes; a lone `0` is left alone (mrml reads it).
        let src = "<mjml><mj-head><mj-attributes><mj-all padding=\"0 8px 0\" /></mj-attributes></mj-head><mj-body><mj-section padding=\"0\"></mj-section></mj-body></mjml>";
        let (_, edits) = lint_and_normalize(src);
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].replacement, "0px 8px 0px");
    }

    #[test]
    fn offsets_map_back_through_edits() {
        let edits = [Edit {
            range: 10..10,
            replacement: " alt=\"\"".to_string(),
        }];
        assert_eq!(original_offset(&edits, 5), 5);
        assert_eq!(original_offset(&edits, 20), 13);
    }
}
