//! The preview's own pages. The shell may use a little script (it is local): a long
//! poll on `/changes` that reloads the page when the edition has been rebuilt.

use super::{Snapshot, WIDTHS};
use crate::compile::GMAIL_CLIP_BYTES;
use crate::personalize::{escape_value, Escape};
use std::fmt::Write;

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    escape_value(s, Escape::Html)
}

/// The shell page: the frame at `width`, the text part, the size and the warnings.
pub(super) fn shell(snapshot: &Snapshot, width: u32) -> String {
    let mut switch = String::new();
    for w in WIDTHS {
        let current = if w == width {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            switch,
            "<a class=\"width\" id=\"width-{w}\" href=\"?width={w}\"{current}>{w} px</a> "
        );
    }
    let (heading, body) = match &snapshot.result {
        Ok(p) => {
            let kb = |b: usize| format!("{:.1} KB", b as f64 / 1024.0);
            let percent = p.html_bytes() * 100 / GMAIL_CLIP_BYTES;
            let size_class = if p.clipped() { "bad" } else { "ok" };
            let mut notes = String::new();
            for w in &p.warnings {
                let class = if w.contains(": error: ") {
                    "error"
                } else {
                    "warning"
                };
                let _ = write!(notes, "<li class=\"{class}\">{}</li>", esc(w));
            }
            if notes.is_empty() {
                notes.push_str("<li class=\"none\">brief check finds no problem.</li>");
            }
            let clip_note = if p.clipped() {
                " Gmail will clip this message and hide the rest behind a link."
            } else {
                ""
            };
            (
                esc(&p.title).into_owned(),
                format!(
                    r#"<p class="meta">Subject: <strong id="subject">{subject}</strong></p>
<p class="meta size {size_class}" id="size">HTML: {size} of Gmail's {clip} limit ({percent}%).{clip_note}</p>
<ul id="warnings">{notes}</ul>
<div class="panes">
  <div class="frame"><iframe id="email" title="The email at {width} px" src="email.html?g={generation}" width="{width}" style="width: {width}px"></iframe></div>
  <div class="text"><h2>Text part</h2><pre id="text">{text}</pre></div>
</div>"#,
                    subject = esc(&p.subject),
                    size = kb(p.html_bytes()),
                    clip = kb(GMAIL_CLIP_BYTES),
                    text = esc(&p.text),
                    generation = snapshot.generation,
                ),
            )
        }
        Err(errors) => {
            let mut list = String::new();
            for e in errors {
                let _ = write!(list, "<li>{}</li>", esc(e));
            }
            (
                "The edition does not build".to_string(),
                format!(
                    "<p class=\"meta\">Fix the problems below and save: the page reloads by itself.</p>\n<ul id=\"errors\">{list}</ul>"
                ),
            )
        }
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>Preview: {heading}</title>
<style>
  body {{ margin: 0; padding: 16px 20px; background: #e9e7e2; color: #1f2328; font-family: Helvetica, Arial, sans-serif; font-size: 14px; }}
  h1 {{ font-size: 20px; margin: 0 0 8px; }}
  h2 {{ font-size: 14px; margin: 0 0 8px; }}
  .width {{ display: inline-block; padding: 4px 10px; border: 1px solid #8a8f98; border-radius: 4px; color: #1f2328; text-decoration: none; background: #fff; }}
  .width[aria-current] {{ background: #1f3a5f; color: #fff; border-color: #1f3a5f; }}
  .meta {{ margin: 6px 0; }}
  .size.bad {{ color: #a3261a; font-weight: bold; }}
  ul {{ margin: 6px 0 12px; padding-left: 20px; }}
  .warning {{ color: #8a5a00; font-family: monospace; }}
  .error {{ color: #a3261a; font-family: monospace; font-weight: bold; }}
  #errors li {{ color: #a3261a; font-family: monospace; white-space: pre-wrap; }}
  .none {{ color: #5c6068; list-style: none; margin-left: -20px; }}
  .panes {{ display: flex; gap: 20px; align-items: flex-start; flex-wrap: wrap; }}
  iframe {{ border: 1px solid #8a8f98; background: #fff; height: 85vh; }}
  .text {{ flex: 1; min-width: 300px; }}
  pre {{ background: #fff; border: 1px solid #c9c6bf; padding: 12px; white-space: pre-wrap; font-size: 13px; max-height: 85vh; overflow: auto; }}
</style>
</head>
<body data-generation="{generation}">
<h1 id="title">{heading}</h1>
<p>Width: {switch}</p>
{body}
<script>
// Reload when the edition is rebuilt (long poll; the server answers on a change).
(function poll() {{
  fetch("changes?since={generation}", {{ cache: "no-store" }})
    .then(function (r) {{ return r.text(); }})
    .then(function (g) {{ if (g.trim() !== "{generation}") {{ location.reload(); }} else {{ poll(); }} }})
    .catch(function () {{ setTimeout(poll, 1000); }});
}})();
</script>
</body>
</html>
"#,
        generation = snapshot.generation,
    )
}

/// What the frame shows when the edition does not build.
pub(super) fn error_document(errors: &[String]) -> String {
    let mut list = String::new();
    for e in errors {
        let _ = write!(list, "<li>{}</li>", esc(e));
    }
    format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\" /><title>Build error</title></head><body><ul>{list}</ul></body></html>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::Preview;

    fn snapshot(result: Result<Preview, Vec<String>>) -> Snapshot {
        Snapshot {
            generation: 7,
            result,
        }
    }

    #[test]
    fn shell_escapes_and_reports_size() {
        let p = Preview {
            slug: "s".into(),
            title: "<b>Tom & Jerry</b>".into(),
            subject: "S".into(),
            html: "x".repeat(GMAIL_CLIP_BYTES + 1),
            text: "a < b".into(),
            warnings: vec!["w <1>".into()],
        };
        let page = shell(&snapshot(Ok(p)), 375);
        assert!(page.contains("&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;"));
        assert!(page.contains("a &lt; b"));
        assert!(page.contains("w &lt;1&gt;"));
        assert!(page.contains("width=\"375\""));
        assert!(page.contains("size bad"));
        assert!(page.contains("changes?since=7"));
    }

    #[test]
    fn shell_shows_errors() {
        let page = shell(&snapshot(Err(vec!["e.md:3:1: error: <x>".into()])), 640);
        assert!(page.contains("does not build"));
        assert!(page.contains("e.md:3:1: error: &lt;x&gt;"));
        assert!(!page.contains("<iframe"));
    }
}
