//! Markdown from an edition, rendered twice from one parse: HTML for the MJML and
//! plain text for the text part. Raw HTML in the source is data: it is escaped in the
//! HTML and kept as typed in the text.

use crate::edition::markdown_options;
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use std::borrow::Cow;

/// One Markdown field rendered both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RenderedMarkdown {
    pub html: String,
    pub text: String,
}

/// What becomes of each link's destination (tracking rewrites some; images are not
/// links and are left alone).
pub type LinkMap<'a> = &'a dyn Fn(&str) -> String;

/// The essay: block Markdown.
pub fn block(source: &str) -> RenderedMarkdown {
    block_with_links(source, &|url| url.to_string())
}

/// [`block`], with every link's destination passed through `links`.
pub fn block_with_links(source: &str, links: LinkMap<'_>) -> RenderedMarkdown {
    RenderedMarkdown {
        html: html(source, false, links),
        text: text(source, links),
    }
}

/// A short field (sponsor text, roundup text, agenda text): paragraphs are joined
/// with line breaks instead of becoming `<p>` blocks.
pub fn inline(source: &str) -> RenderedMarkdown {
    inline_with_links(source, &|url| url.to_string())
}

/// [`inline`], with every link's destination passed through `links`.
pub fn inline_with_links(source: &str, links: LinkMap<'_>) -> RenderedMarkdown {
    RenderedMarkdown {
        html: html(source, true, links),
        text: text(source, links).trim_end().to_string(),
    }
}

/// The parser's events with each link destination mapped through `links`.
fn mapped_events<'s>(source: &'s str, links: LinkMap<'s>) -> impl Iterator<Item = Event<'s>> + 's {
    Parser::new_ext(source, markdown_options()).map(move |event| match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: links(&dest_url).into(),
            title,
            id,
        }),
        other => other,
    })
}

/// Raw HTML becomes text; link titles lose their line breaks (mrml would print
/// them as a literal `\n` inside the attribute).
fn safe_events<'s>(source: &'s str, links: LinkMap<'s>) -> impl Iterator<Item = Event<'s>> + 's {
    mapped_events(source, links).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if title.contains(['\n', '\r']) => Event::Start(Tag::Link {
            link_type,
            dest_url,
            title: title.replace(['\n', '\r'], " ").into(),
            id,
        }),
        other => other,
    })
}

fn html(source: &str, inline: bool, links: LinkMap<'_>) -> String {
    let mut out = String::with_capacity(source.len() * 5 / 4 + 32);
    if inline {
        let mut paragraphs = 0usize;
        let events = safe_events(source, links).filter_map(|e| match e {
            Event::Start(Tag::Paragraph) => {
                paragraphs += 1;
                (paragraphs > 1).then_some(Event::InlineHtml("<br /><br />".into()))
            }
            Event::End(TagEnd::Paragraph) => None,
            other => Some(other),
        });
        pulldown_cmark::html::push_html(&mut out, events);
    } else {
        pulldown_cmark::html::push_html(&mut out, safe_events(source, links));
    }
    // No trailing newline inside the mj-text.
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Plain text: paragraphs separated by blank lines, lists with `- ` or `1. `,
/// quotes with `> `, headings underlined, every link followed by its URL. Long lines
/// are wrapped later, with the rest of the text part.
fn text(source: &str, links: LinkMap<'_>) -> String {
    let mut r = TextRenderer::default();
    for event in mapped_events(source, links) {
        r.event(event);
    }
    r.flush_line();
    let mut out = r.out;
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

#[derive(Default)]
struct TextRenderer {
    out: String,
    /// The line being built (without its prefix).
    line: String,
    /// Prefixes of the enclosing blocks: "> " for quotes, "  " for list items.
    prefixes: Vec<&'static str>,
    /// The bullet of a list item whose first line is not written yet.
    pending_bullet: Option<String>,
    /// Counters of the enclosing lists (`None`: bulleted).
    lists: Vec<Option<u64>>,
    links: Vec<String>,
    heading: Option<HeadingLevel>,
    in_code_block: bool,
}

impl TextRenderer {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                if self.in_code_block {
                    for (i, l) in t.split('\n').enumerate() {
                        if i > 0 {
                            self.flush_line();
                        }
                        if !l.is_empty() {
                            self.line.push_str("    ");
                            self.line.push_str(l);
                        }
                    }
                } else {
                    self.line.push_str(&t.replace('\n', " "));
                }
            }
            Event::SoftBreak => self.line.push(' '),
            Event::HardBreak => self.flush_line(),
            Event::Rule => {
                self.blank_line();
                self.line.push_str("----");
                self.flush_line();
                self.blank_line();
            }
            Event::TaskListMarker(done) => self.line.push_str(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(name) => {
                self.line.push('[');
                self.line.push_str(&name);
                self.line.push(']');
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => self.line.push_str(&t),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::HtmlBlock => {}
            Tag::Heading { level, .. } => {
                self.blank_line();
                self.heading = Some(level);
            }
            Tag::BlockQuote(_) => {
                self.flush_line();
                self.prefixes.push("> ");
            }
            Tag::CodeBlock(_) => {
                self.flush_line();
                self.in_code_block = true;
            }
            Tag::List(start) => {
                self.flush_line();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush_line();
                let bullet = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let b = format!("{n}. ");
                        *n += 1;
                        b
                    }
                    _ => "- ".to_string(),
                };
                self.pending_bullet = Some(bullet);
                self.prefixes.push("  ");
            }
            Tag::Link { dest_url, .. } => self.links.push(dest_url.into_string()),
            Tag::Image { dest_url, .. } => {
                self.line.push_str("[image: ");
                self.links.push(dest_url.into_string());
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock => {
                self.flush_line();
                self.blank_line();
            }
            TagEnd::Heading(level) => {
                let width = super::text::width_of(&self.line).min(super::text::WIDTH);
                self.flush_line();
                if self.heading.take().is_some() {
                    let mark = if level == HeadingLevel::H1 { "=" } else { "-" };
                    self.line.push_str(&mark.repeat(width));
                    self.flush_line();
                }
                self.blank_line();
            }
            TagEnd::BlockQuote(_) => {
                self.flush_line();
                // The quote's last paragraph left a quote-marked blank line.
                while self.out.ends_with(">\n") {
                    let cut = self.out[..self.out.len() - 1]
                        .rfind('\n')
                        .map_or(0, |i| i + 1);
                    if !self.out[cut..].trim_end().chars().all(|c| c == '>') {
                        break;
                    }
                    self.out.truncate(cut);
                }
                self.prefixes.pop();
                self.blank_line();
            }
            TagEnd::CodeBlock => {
                self.flush_line();
                self.in_code_block = false;
                self.blank_line();
            }
            TagEnd::List(_) => {
                self.flush_line();
                self.lists.pop();
                self.blank_line();
            }
            TagEnd::Item => {
                self.flush_line();
                self.prefixes.pop();
            }
            TagEnd::Link => {
                if let Some(url) = self.links.pop() {
                    let label = display_url(&url);
                    if !self.line.ends_with(label.as_ref()) {
                        self.line.push_str(" (");
                        self.line.push_str(&url);
                        self.line.push(')');
                    }
                }
            }
            TagEnd::Image => {
                if let Some(url) = self.links.pop() {
                    self.line.push_str("] (");
                    self.line.push_str(&url);
                    self.line.push(')');
                }
            }
            _ => {}
        }
    }

    /// Writes the current line with the prefixes of its blocks.
    fn flush_line(&mut self) {
        if self.line.is_empty() && self.pending_bullet.is_none() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        let line = line.trim_end();
        let item_depth = self.prefixes.len();
        for (i, p) in self.prefixes.iter().enumerate() {
            // The innermost list item's first line carries the bullet instead.
            if i + 1 == item_depth && *p == "  " {
                if let Some(b) = self.pending_bullet.take() {
                    self.out.push_str(&b);
                    continue;
                }
            }
            self.out.push_str(p);
        }
        self.out.push_str(line);
        // Prefix-only lines ("> ") become "> " without trailing space.
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        self.out.push('\n');
    }

    /// An empty line (with quote marks inside a quote), never two in a row.
    fn blank_line(&mut self) {
        self.flush_line();
        if self.out.is_empty() || self.out.ends_with("\n\n") {
            return;
        }
        let quote: String = self
            .prefixes
            .iter()
            .filter(|p| **p == "> ")
            .copied()
            .collect();
        let quote = quote.trim_end();
        let blank = format!("{quote}\n");
        if !self.out.ends_with(&format!("\n{blank}")) {
            self.out.push_str(&blank);
        }
    }
}

/// The text a link to `url` shows when it is written as an autolink.
fn display_url(url: &str) -> Cow<'_, str> {
    match url.strip_prefix("mailto:") {
        Some(addr) => Cow::Borrowed(addr),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_escaped() {
        let r = block("Hi <script>alert(1)</script> & <b onerror=x>bye</b>\n\n<div>block</div>\n");
        assert!(!r.html.contains("<script"), "{}", r.html);
        assert!(!r.html.contains("<b "), "{}", r.html);
        assert!(!r.html.contains("<div"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(r.html.contains("&amp;"), "{}", r.html);
        assert!(r
            .text
            .contains("Hi <script>alert(1)</script> & <b onerror=x>bye</b>"));
    }

    #[test]
    fn text_lists_quotes_and_links() {
        let r = block("# Head\n\nSee [the report](https://example.org/r).\n\n- one\n- two\n\n> quoted\n> text\n\n1. first\n2. second\n");
        assert_eq!(
            r.text,
            "Head\n====\n\nSee the report (https://example.org/r).\n\n- one\n- two\n\n> quoted text\n\n1. first\n2. second"
        );
    }

    #[test]
    fn inline_has_no_paragraphs() {
        let r = inline("A *b* [c](https://example.org)\n\nSecond");
        assert_eq!(
            r.html,
            "A <em>b</em> <a href=\"https://example.org\">c</a><br /><br />Second"
        );
        assert_eq!(r.text, "A b c (https://example.org)\n\nSecond");
    }

    #[test]
    fn autolink_is_not_repeated() {
        let r = inline("<https://example.org/x>");
        assert_eq!(r.text, "https://example.org/x");
    }
}
