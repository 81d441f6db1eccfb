//! Compose and compile: snapshots of the MJML, the text part and every user-facing
//! error message; the personalization seam; hostile text; no panic on any edition;
//! and `brief init`, `brief check`, `brief build` run as the real binary.

use crate::harness::stdout;
use brief::compile::{self, compile_edition, compile_mjml};
use brief::compose::{templates, Composer, RecipientValues};
use brief::config::Config;
use brief::edition;
use brief::personalize::{self, Escape, Template};
use brief::token;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------
// Harness

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG
        .get_or_init(|| Config::load(&repo().join("brief.toml")).expect("the sample config loads"))
}

fn default_composer() -> &'static Composer {
    static COMPOSER: OnceLock<Composer> = OnceLock::new();
    COMPOSER.get_or_init(|| {
        Composer::from_dir(Path::new("/nonexistent-templates")).expect("defaults load")
    })
}

/// The sample newsletter with its editions and twenty readers.
fn newsletter() -> tempfile::TempDir {
    crate::harness::sample_folder(&[], 20)
}

fn brief(dir: &Path, args: &[&str]) -> Output {
    crate::harness::brief_as_user(dir, args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Markers made visible for snapshots.
fn show_markers(s: &str) -> String {
    s.replace('\u{E000}', "⟦").replace('\u{E001}', "⟧")
}

fn sample_edition() -> edition::Edition {
    edition::load(&repo().join("editions/2026-11-20.md")).expect("the sample edition loads")
}

const MINIMAL: &str = "+++\ntitle = \"Minimal\"\ndate = 2026-11-20\n+++\nJust an essay.\n";

// ---------------------------------------------------------------------------------
// Snapshots of the output

#[test]
fn sample_edition_mjml_and_text() {
    let compiled = compile_edition(
        repo_config(),
        default_composer(),
        sample_edition(),
        &["city".to_string()],
    )
    .expect("compiles");
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    insta::assert_snapshot!("sample_mjml", show_markers(&compiled.mjml));
    insta::assert_snapshot!("sample_text", show_markers(&compiled.text));
    assert_eq!(
        compiled.subject,
        "The Harbour Brief: the slow comeback of the night train"
    );
}

#[test]
fn second_edition_text() {
    // A sponsor without image or button, a roundup item without text, an agenda item
    // without a place.
    let e = edition::load(&repo().join("editions/2026-12-04.md")).unwrap();
    let compiled = compile_edition(repo_config(), default_composer(), e, &[]).unwrap();
    insta::assert_snapshot!("second_text", show_markers(&compiled.text));
}

#[test]
fn minimal_edition_text() {
    let e = edition::parse(Path::new("editions/minimal.md"), MINIMAL).unwrap();
    let compiled = compile_edition(repo_config(), default_composer(), e, &[]).unwrap();
    insta::assert_snapshot!("minimal_text", show_markers(&compiled.text));
    assert_eq!(compiled.preheader, "Just an essay.");
}

#[test]
fn text_part_is_wrapped_and_lists_every_link() {
    let compiled =
        compile_edition(repo_config(), default_composer(), sample_edition(), &[]).unwrap();
    for line in compiled.text.lines() {
        let long_word = line.split(' ').any(|w| w.chars().count() > 40);
        assert!(
            line.chars().count() <= 76 || long_word,
            "line too long: {line:?}"
        );
    }
    // Every http(s) URL of the HTML (links and images) is in the text part as often,
    // so the message's URL count is even (rspamd's URI_COUNT_ODD counts them all).
    let mut in_html: BTreeMap<&str, usize> = BTreeMap::new();
    for attr in ["href=\"", "src=\""] {
        for (i, _) in compiled.html.match_indices(attr) {
            let rest = &compiled.html[i + attr.len()..];
            let url = &rest[..rest.find('"').unwrap()];
            if url.starts_with("http") {
                *in_html.entry(url).or_default() += 1;
            }
        }
    }
    assert!(in_html.values().sum::<usize>() > 10, "{in_html:?}");
    for (url, n) in &in_html {
        assert_eq!(
            compiled.text.matches(url).count(),
            *n,
            "{url}: {n} times in the HTML"
        );
    }
    let web = token::web_url(&repo_config().newsletter.base_url, "2026-11-20");
    assert_eq!(
        in_html[web.as_str()],
        2,
        "header and footer link the web version"
    );
    let e = sample_edition();
    // The sections come in the contract's order.
    let order = [
        "Ten years ago",
        "The Roundup",
        "Look out for",
        "[Edited by Ana Example/Tomasz Example]",
        "Read more",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|s| {
            compiled
                .text
                .find(s)
                .unwrap_or_else(|| panic!("{s} missing"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let html_positions: Vec<usize> = [
        "Ten years ago",
        "The Roundup",
        "Look out for",
        "[Edited by",
        "Read more",
    ]
    .iter()
    .map(|s| {
        compiled
            .html
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing from HTML"))
    })
    .collect();
    assert!(html_positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(e.roundup.unwrap().items.len(), 5);
}

// ---------------------------------------------------------------------------------
// The default templates

#[test]
fn default_templates_compile_clean_with_every_section_and_with_none() {
    for e in [
        sample_edition(),
        edition::load(&repo().join("editions/2026-12-04.md")).unwrap(),
        edition::parse(Path::new("editions/minimal.md"), MINIMAL).unwrap(),
    ] {
        let composed = default_composer()
            .compose(repo_config(), &e, &RecipientValues::markers(&[]))
            .unwrap();
        let findings = compile::lint::lint(&composed.mjml);
        assert!(findings.is_empty(), "{}: {findings:?}", e.slug);
        let parsed = mrml::parse(&composed.mjml).expect("mrml parses");
        assert!(parsed.warnings.is_empty(), "{}: mrml warnings", e.slug);
        let out = compile_mjml(&composed.mjml).unwrap();
        assert!(out.findings.is_empty());
        // No third-party resources but the edition's own images.
        assert!(
            !out.html.contains("fonts.googleapis"),
            "web fonts are loaded"
        );
        assert!(!out.html.contains("<link"), "a stylesheet is linked");
    }
    assert_eq!(templates::DEFAULTS.len(), 11);
}

#[test]
fn markers_survive_mrml_in_attributes_and_text() {
    let compiled =
        compile_edition(repo_config(), default_composer(), sample_edition(), &[]).unwrap();
    let unsubscribe = personalize::marker("unsubscribe_url");
    assert!(compiled.html.contains(&format!("href=\"{unsubscribe}\"")));
    assert!(compiled
        .html
        .contains(&personalize::marker("subscriber.email")));
    assert!(compiled.text.contains(&unsubscribe));
    let t = Template::parse(&compiled.html);
    assert_eq!(
        t.fields(),
        [
            "subscriber.email".to_string(),
            "preferences_url".to_string(),
            "unsubscribe_url".to_string()
        ]
    );
}

// ---------------------------------------------------------------------------------
// The personalization seam: compile once + substitute == render from scratch

#[test]
fn compile_once_then_personalize_equals_rendering_each_recipient() {
    let config = repo_config();
    let composer = default_composer();
    let e = sample_edition();
    let columns = vec!["city".to_string()];
    let keyring = token::Keyring::new(
        b"a-test-secret-of-enough-length",
        &config.newsletter.list_id,
    );

    let compiled = compile_edition(config, composer, e.clone(), &columns).unwrap();
    let html = Template::parse(&compiled.html);
    let text = Template::parse(&compiled.text);

    let readers = std::fs::read_to_string(repo().join("subscribers/readers.csv")).unwrap();
    let mut recipients: Vec<BTreeMap<String, String>> = readers
        .lines()
        .skip(1)
        .take(40)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [("email", f[0]), ("name", f[1]), ("city", f[2])]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    recipients.push(
        [
            ("email", "o'neil+news@example.org"),
            ("name", "Tom & \"Jerry\" <O'Neil>"),
            ("city", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    assert!(recipients.len() > 40);

    for r in &recipients {
        let unsubscribe = token::unsubscribe_url(
            &config.newsletter.base_url,
            &keyring.issue(&r["email"], &e.slug, false),
        );
        let value = |field: &str| -> String {
            if field == personalize::UNSUBSCRIBE_URL {
                unsubscribe.clone()
            } else if field == personalize::PREFERENCES_URL {
                unsubscribe.replacen("/u/", "/p/", 1)
            } else {
                r[field.strip_prefix("subscriber.").unwrap()].clone()
            }
        };
        let html_values: Vec<String> = html.fields().iter().map(|f| value(f)).collect();
        let text_values: Vec<String> = text.fields().iter().map(|f| value(f)).collect();
        let personalized_html = html.render(
            &html_values.iter().map(String::as_str).collect::<Vec<_>>(),
            Escape::Html,
        );
        let personalized_text = text.render(
            &text_values.iter().map(String::as_str).collect::<Vec<_>>(),
            Escape::None,
        );

        let personal = RecipientValues {
            unsubscribe_url: unsubscribe.clone(),
            preferences_url: unsubscribe.replacen("/u/", "/p/", 1),
            subscriber: r.clone(),
        };
        let composed = composer.compose(config, &e, &personal).unwrap();
        let from_scratch = compile_mjml(&composed.mjml).unwrap().html;
        assert_eq!(
            personalized_html, from_scratch,
            "HTML differs for {}",
            r["email"]
        );
        assert_eq!(
            personalized_text, composed.text,
            "text differs for {}",
            r["email"]
        );
    }
}

#[test]
fn every_subscriber_field_reaches_the_output_through_an_override() {
    let dir = newsletter();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    let footer = templates::DEFAULTS
        .iter()
        .find(|t| t.name == "footer")
        .unwrap()
        .source;
    std::fs::write(
        dir.path().join("templates/footer.mjml.hbs"),
        footer.replace(
            "{{newsletter.postal_address}}",
            "Hello {{subscriber.name}} in {{subscriber.city}}. {{newsletter.postal_address}}",
        ),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("brief.toml")).unwrap();
    let compiled = compile::build(&config, "2026-11-20", &["city".to_string()]).unwrap();
    let t = Template::parse(&compiled.html);
    for f in [
        "subscriber.name",
        "subscriber.city",
        "subscriber.email",
        "unsubscribe_url",
    ] {
        assert!(t.fields().iter().any(|x| x == f), "{f} missing");
    }
    let html = t.render(
        &t.fields()
            .iter()
            .map(|f| match f.as_str() {
                "subscriber.name" => "Tom & Jerry",
                "subscriber.city" => "<Gent>",
                _ => "x",
            })
            .collect::<Vec<_>>(),
        Escape::Html,
    );
    assert!(html.contains("Hello Tom &amp; Jerry in &lt;Gent&gt;."));
    // A column the lists do not have is a template error, not an empty string.
    let err = compile::build(&config, "2026-11-20", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("subscriber.city"), "{err}");
    assert!(err.contains("footer.mjml.hbs"), "{err}");
}

// ---------------------------------------------------------------------------------
// Hostile text

#[test]
fn hostile_text_never_becomes_markup() {
    let src = r#"+++
title = "Tom & Jerry <script>alert(1)</script>"
kicker = "\"><img src=x onerror=alert(1)>"
date = 2026-11-20
editors = ["<b onmouseover=alert(1)>Eve</b>"]

[sponsor]
label = "\" onerror=\"alert(1) \\u{e000}unsubscribe_url\\u{e001}"
text = "<iframe src=https://evil.example.org></iframe> & more"
url = "https://example.org/?a=1&b=2"
image = "https://example.org/i.png?x=1&y=2"
cta = "</mj-button><mj-raw><script>alert(1)</script></mj-raw>"

[[roundup.items]]
headline = "</mj-text><mj-raw><script>alert(2)</script></mj-raw><mj-text>"
text = "<img src=x onerror=alert(3)>"
url = "https://example.org/r"

[[agenda.items]]
text = "Tom & Jerry at <b>noon</b>"
when = "<i>10:00</i>"

[[read_more]]
title = "<a href=javascript:alert(4)>click</a>"
url = "https://example.org/m"
+++
Hello <script>alert(5)</script> & <img src=x onerror=alert(6)>

Forged markers: \u{e000}unsubscribe_url\u{e001} and \\u{e000}subscriber.email\\u{e001}.

<div onclick="alert(7)">block html</div>

Tom & Jerry.
"#;
    let e = edition::parse(Path::new("editions/hostile.md"), src)
        .expect("hostile text is data, not an error");
    let compiled = compile_edition(repo_config(), default_composer(), e, &[]).unwrap();
    let html = &compiled.html;
    for live in [
        "<script",
        "<img src=x",
        "<iframe",
        "<b onmouseover",
        "<div onclick",
        "<a href=javascript",
        "\" onerror=\"",
        "<i>10:00",
        "<mj-raw",
        "</mj-button>",
    ] {
        assert!(!html.contains(live), "`{live}` became markup");
    }
    assert!(html.contains("Tom &amp; Jerry &lt;script&gt;"));
    // Text that spells a marker's escape stays text, in attributes and elsewhere.
    assert_eq!(
        Template::parse(html).fields(),
        ["subscriber.email", "preferences_url", "unsubscribe_url"]
    );
    assert!(html.contains("Forged markers: \\u{e000}unsubscribe_url"));
    // The text part shows everything as typed.
    let text = &compiled.text;
    assert!(
        text.contains("Tom & Jerry <script>alert(1)</script>"),
        "{text}"
    );
    assert!(text.contains("Tom & Jerry."));
    assert!(text.contains("Tom & Jerry at <b>noon</b>"));
    assert!(!text.contains("&amp;"));
}

#[test]
fn javascript_links_are_errors_wherever_they_are() {
    for (field, src) in [
        ("essay", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n[x](javascript:alert(1))\n"),
        ("essay autolink", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n<javascript:alert(1)>\n"),
        ("essay image", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n![x](javascript:alert(1))\n"),
        ("sponsor text", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[sponsor]\ntext = \"[x](JavaScript:alert(1))\"\nurl = \"https://example.org\"\n+++\nx\n"),
        ("read_more", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[[read_more]]\ntitle = \"x\"\nurl = \"javascript:alert(1)\"\n+++\nx\n"),
    ] {
        let err = edition::parse(Path::new("editions/e.md"), src).expect_err(field);
        assert!(err.to_string().contains("javascript:") || err.to_string().contains("JavaScript:"), "{field}: {err}");
    }
}

// ---------------------------------------------------------------------------------
// Every user-facing error message

const EDITION_ERRORS: &[(&str, &str)] = &[
    ("no_front_matter", "# Hello\n"),
    ("unclosed_front_matter", "+++\ntitle = \"T\"\ndate = 2026-11-20\nHello\n"),
    ("unknown_key", "+++\ntitle = \"T\"\ndate = 2026-11-20\nkickr = \"x\"\n+++\nx\n"),
    ("unknown_key_in_sponsor", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[sponsor]\ntext = \"x\"\nurl = \"https://example.org\"\nimg = \"https://example.org/i.png\"\n+++\nx\n"),
    ("unknown_table", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[sponser]\ntext = \"x\"\n+++\nx\n"),
    ("missing_title", "+++\ndate = 2026-11-20\n+++\nx\n"),
    ("missing_date", "+++\ntitle = \"T\"\n+++\nx\n"),
    ("empty_title", "+++\ntitle = \"  \"\ndate = 2026-11-20\n+++\nx\n"),
    ("date_as_string", "+++\ntitle = \"T\"\ndate = \"2026-11-20\"\n+++\nx\n"),
    ("date_with_time", "+++\ntitle = \"T\"\ndate = 2026-11-20T10:00:00Z\n+++\nx\n"),
    ("send_at_without_offset", "+++\ntitle = \"T\"\ndate = 2026-11-20\nsend_at = 2026-11-20T07:00:00\n+++\nx\n"),
    ("send_at_date_only", "+++\ntitle = \"T\"\ndate = 2026-11-20\nsend_at = 2026-11-20\n+++\nx\n"),
    ("toml_syntax", "+++\ntitle = \"T\ndate = 2026-11-20\n+++\nx\n"),
    ("relative_url", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[[read_more]]\ntitle = \"x\"\nurl = \"/archive\"\n+++\nx\n"),
    ("url_with_quote", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[sponsor]\ntext = \"x\"\nurl = \"https://example.org/\\\"onerror=x\"\n+++\nx\n"),
    ("mailto_sponsor", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[sponsor]\ntext = \"x\"\nurl = \"mailto:a@example.org\"\n+++\nx\n"),
    ("javascript_in_essay", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\nFirst line.\n\nA [link](javascript:alert(1)) here.\n"),
    ("roundup_item_without_headline", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[[roundup.items]]\ntext = \"x\"\n+++\nx\n"),
    ("agenda_item_empty_text", "+++\ntitle = \"T\"\ndate = 2026-11-20\n[[agenda.items]]\ntext = \"\"\n+++\nx\n"),
    ("bad_audience_name", "+++\ntitle = \"T\"\ndate = 2026-11-20\naudience = [\"readers\", \"../etc/passwd\"]\n+++\nx\n"),
    ("empty_audience", "+++\ntitle = \"T\"\ndate = 2026-11-20\naudience = []\n+++\nx\n"),
    ("empty_essay", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n\n"),
    ("marker_characters", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\nHello \u{E000}unsubscribe_url\u{E001}\n"),
    ("control_character_in_title", "+++\ntitle = \"T\\u0007\"\ndate = 2026-11-20\n+++\nx\n"),
    ("too_deep_markdown", "+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>> deep\n"),
    ("many_problems_at_once", "+++\ntitle = \"\"\ndate = 2026-11-20\nsend_at = 2026-11-20T07:00:00\n[sponsor]\ntext = \"x\"\nurl = \"ftp://example.org\"\n[[read_more]]\ntitle = \"x\"\nurl = \"example.org\"\n+++\n[a](javascript:x)\n"),
];

#[test]
fn edition_error_messages() {
    for (name, src) in EDITION_ERRORS {
        let err = edition::parse(Path::new("editions/broken.md"), src)
            .expect_err(name)
            .to_string();
        insta::assert_snapshot!(format!("edition_error_{name}"), err);
    }
}

#[test]
fn unreadable_and_non_utf8_editions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.md");
    std::fs::write(&p, b"+++\ntitle = \"caf\xe9\"\n").unwrap();
    let err = edition::load(&p).unwrap_err();
    assert_eq!((err.0[0].line, err.0[0].column), (2, 13));
    assert!(err.0[0].message.contains("UTF-8"));
    let err = edition::load(&dir.path().join("missing.md")).unwrap_err();
    assert!(err.0[0].message.starts_with("cannot read edition"));
}

const CONFIG_BASE: &str = "[newsletter]\nname = \"N\"\nfrom = \"N <n@example.org>\"\nlist_id = \"n.example.org\"\nbase_url = \"https://example.org/n\"\npostal_address = \"1 Example Street\"\n";

#[test]
fn config_error_messages() {
    for (name, extra, replace) in [
        ("unknown_key", "[delivery]\nconcurency = 4\n", None),
        (
            "bad_transport",
            "[delivery]\ntransport = \"pigeon\"\n",
            None,
        ),
        (
            "bad_base_url",
            "",
            Some(("https://example.org/n", "example.org/n")),
        ),
        (
            "bad_from",
            "",
            Some(("N <n@example.org>", "not an address")),
        ),
        ("missing_name", "", Some(("name = \"N\"\n", ""))),
    ] {
        let mut src = format!("{CONFIG_BASE}{extra}");
        if let Some((a, b)) = replace {
            src = src.replace(a, b);
        }
        let err = Config::parse(Path::new("brief.toml"), &src)
            .unwrap_err()
            .to_string();
        insta::assert_snapshot!(format!("config_error_{name}"), err);
    }
}

/// Template overrides that break: each is written into a fresh newsletter and the
/// message of `compile::build` is snapshotted (with the temp path masked).
const TEMPLATE_ERRORS: &[(&str, &str, &str, &str)] = &[
    // (case, file, text to replace in the default, replacement)
    (
        "does_not_parse",
        "footer.mjml.hbs",
        "{{newsletter.postal_address}}",
        "{{#if newsletter.postal_address}}",
    ),
    (
        "unknown_variable",
        "header.mjml.hbs",
        "{{edition.title}}",
        "{{edition.titel}}",
    ),
    (
        "unknown_partial",
        "layout.mjml.hbs",
        "{{> essay}}",
        "{{> esay}}",
    ),
    (
        "unknown_element",
        "roundup.mjml.hbs",
        "<mj-divider ",
        "<mj-dividr ",
    ),
    (
        "unknown_attribute",
        "essay.mjml.hbs",
        "<mj-text css-class=\"essay\">",
        "<mj-text css-class=\"essay\" colour=\"red\">",
    ),
    (
        "child_not_allowed",
        "credit.mjml.hbs",
        "<mj-column>",
        "<mj-column><mj-section></mj-section>",
    ),
    (
        "carousel",
        "essay.mjml.hbs",
        "<mj-text css-class=\"essay\">",
        "<mj-carousel></mj-carousel><mj-text css-class=\"essay\">",
    ),
    (
        "html_outside_text",
        "read_more.mjml.hbs",
        "<mj-column>",
        "<mj-column><p>hello</p>",
    ),
    ("unclosed_element", "layout.mjml.hbs", "</mj-body>", ""),
    (
        "text_template_unknown_variable",
        "email.txt.hbs",
        "{{web_url}}",
        "{{web_link}}",
    ),
    (
        "duplicate_attribute",
        "essay.mjml.hbs",
        "<mj-text css-class=\"essay\">",
        "<mj-text color=\"#000\" color=\"#111\">",
    ),
];

#[test]
fn template_error_messages() {
    for (case, file, from, to) in TEMPLATE_ERRORS {
        let dir = newsletter();
        let tdir = dir.path().join("templates");
        std::fs::create_dir_all(&tdir).unwrap();
        let default = templates::DEFAULTS
            .iter()
            .find(|t| t.file == *file)
            .unwrap()
            .source;
        assert!(
            default.contains(from),
            "{case}: the default {file} has no {from:?}"
        );
        std::fs::write(tdir.join(file), default.replacen(from, to, 1)).unwrap();
        let config = Config::load(&dir.path().join("brief.toml")).unwrap();
        let err = compile::build(&config, "2026-11-20", &["city".to_string()])
            .expect_err(case)
            .to_string()
            .replace(&dir.path().display().to_string(), "<newsletter>");
        insta::assert_snapshot!(format!("template_error_{case}"), err);
    }
}

/// Images without `alt` get `alt=""` and a warning each, at the line of each image
/// in the template (not all at the first one).
#[test]
fn each_finding_points_at_its_own_occurrence() {
    let dir = newsletter();
    let tdir = dir.path().join("templates");
    std::fs::create_dir_all(&tdir).unwrap();
    let footer = templates::DEFAULTS
        .iter()
        .find(|t| t.file == "footer.mjml.hbs")
        .unwrap()
        .source;
    let images = "<mj-section>\n  <mj-column>\n    <mj-image src=\"https://news.example.org/a.png\" />\n\n    <mj-image src=\"https://news.example.org/b.png\" />\n  </mj-column>\n</mj-section>\n";
    std::fs::write(tdir.join("footer.mjml.hbs"), format!("{images}{footer}")).unwrap();
    let config = Config::load(&dir.path().join("brief.toml")).unwrap();
    let compiled = compile::build(&config, "2026-11-20", &[]).expect("builds");
    let at: Vec<(String, usize)> = compiled
        .warnings
        .iter()
        .filter(|w| w.message.contains("alt"))
        .map(|w| (w.file.display().to_string(), w.line))
        .collect();
    let file = tdir.join("footer.mjml.hbs").display().to_string();
    assert_eq!(
        at,
        [(file.clone(), 3), (file, 5)],
        "{:?}",
        compiled.warnings
    );
    assert_eq!(compiled.html.matches("alt=\"\"").count(), 2);
}

#[test]
fn lint_bounds_depth_before_mrml() {
    // mrml would overflow the stack on this; brief refuses it first.
    let deep = format!(
        "<mjml><mj-body><mj-section><mj-column><mj-text>{}x{}</mj-text></mj-column></mj-section></mj-body></mjml>",
        "<span>".repeat(5000),
        "</span>".repeat(5000)
    );
    let err = compile_mjml(&deep).unwrap_err();
    assert!(err[0].message.contains("levels deep"), "{:?}", err[0]);
    let deep = format!("<mjml><mj-body>{}", "<mj-section>".repeat(5000));
    assert!(compile_mjml(&deep).is_err());
    // CRLF is normalized before parsing.
    let crlf = "<mjml>\r\n<mj-head>\r\n<mj-title>t</mj-title>\r\n</mj-head>\r\n<mj-body></mj-body>\r\n</mjml>\r\n";
    assert!(compile_mjml(crlf).is_ok());
}

// ---------------------------------------------------------------------------------
// No edition text makes brief panic

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "\\PC{0,40}",
            prop::collection::vec(
                prop_oneof![
                    Just("<script>".to_string()),
                    Just("</mj-text>".to_string()),
                    Just("[a](javascript:x)".to_string()),
                    Just("[a](https://example.org/a)".to_string()),
                    Just("&amp;".to_string()),
                    Just("{{title}}".to_string()),
                    Just("\n\n".to_string()),
                    Just("> ".to_string()),
                    Just("- ".to_string()),
                    Just("`".to_string()),
                    Just("\u{E000}".to_string()),
                    Just("é".to_string()),
                    "[a-z ]{0,12}",
                ],
                0..20
            )
            .prop_map(|v| v.concat()),
        ]
    }

    fn url() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "https://example\\.org/[a-zA-Z0-9/?=&%._~-]{0,30}",
            1 => text(),
        ]
    }

    fn toml_string(s: &str) -> String {
        toml::Value::String(s.to_string()).to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_field_text(title in text(), kicker in text(), headline in text(), item in text(), url in url(), body in text()) {
            let src = format!(
                "+++\ntitle = {}\nkicker = {}\ndate = 2026-11-20\n[sponsor]\ntext = {}\nurl = {}\n[[roundup.items]]\nheadline = {}\ntext = {}\n[[agenda.items]]\ntext = {}\n[[read_more]]\ntitle = {}\nurl = \"https://example.org\"\n+++\n{}",
                toml_string(&title), toml_string(&kicker), toml_string(&item), toml_string(&url),
                toml_string(&headline), toml_string(&item), toml_string(&item), toml_string(&headline), body
            );
            if let Ok(e) = edition::parse(Path::new("editions/p.md"), &src) {
                let compiled = compile_edition(repo_config(), default_composer(), e, &[]);
                prop_assert!(compiled.is_ok(), "{:?}", compiled.err());
            }
        }

        /// Only the essay varies, so nearly every case goes through compose and compile.
        #[test]
        fn any_essay(body in text(), extra in "\\PC{0,200}") {
            let src = format!("+++\ntitle = \"T\"\ndate = 2026-11-20\n+++\n{body}\n{extra}\n");
            if let Ok(e) = edition::parse(Path::new("editions/p.md"), &src) {
                let compiled = compile_edition(repo_config(), default_composer(), e, &[]);
                prop_assert!(compiled.is_ok(), "{:?}", compiled.err());
                let compiled = compiled.unwrap();
                // Whatever the essay says, the only live links are the ones it makes
                // with http(s)/mailto, and the markers are exactly the template's.
                prop_assert!(!compiled.html.contains("<script"));
                let template = Template::parse(&compiled.html);
                prop_assert_eq!(template.fields(), ["subscriber.email", "preferences_url", "unsubscribe_url"]);
            }
        }

        #[test]
        fn any_file_text(src in text(), front in text()) {
            let _ = edition::parse(Path::new("editions/p.md"), &src);
            let wrapped = format!("+++\n{front}\n+++\n{src}");
            if let Ok(e) = edition::parse(Path::new("editions/p.md"), &wrapped) {
                let _ = compile_edition(repo_config(), default_composer(), e, &[]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The real binary: init, check, build

#[test]
fn init_scaffolds_a_newsletter_that_checks_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let o = brief(dir.path(), &["init", "news"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("created news/brief.toml"), "{out}");
    assert!(out.contains("created news/templates/layout.mjml.hbs"));
    assert!(out.contains("created news/subscribers/readers.csv"));
    let news = dir.path().join("news");
    for t in templates::DEFAULTS {
        let written = std::fs::read_to_string(news.join("templates").join(t.file)).unwrap();
        assert_eq!(written, t.source);
    }
    assert!(
        !std::fs::read_to_string(news.join("editions/2026-11-20.md"))
            .unwrap()
            .contains("send_at")
    );

    let o = brief(&news, &["check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 errors and 0 warnings"));

    let o = brief(&news, &["build", "--edition", "2026-11-20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["email.mjml", "email.html", "email.txt"] {
        assert!(news.join("dist/2026-11-20").join(f).is_file(), "{f}");
        assert!(stdout(&o).contains(f));
    }

    // A second init refuses and writes nothing.
    std::fs::write(news.join("templates/footer.mjml.hbs"), "mine").unwrap();
    let o = brief(dir.path(), &["init", "news"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(news.join("templates/footer.mjml.hbs")).unwrap(),
        "mine"
    );
}

#[test]
fn build_writes_files_filled_for_a_sample_reader() {
    let dir = newsletter();
    let out = dir.path().join("out");
    let o = brief(
        dir.path(),
        &[
            "build",
            "--edition",
            "2026-11-20",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("KB"));
    let html = std::fs::read_to_string(out.join("email.html")).unwrap();
    let text = std::fs::read_to_string(out.join("email.txt")).unwrap();
    let mjml = std::fs::read_to_string(out.join("email.mjml")).unwrap();
    for doc in [&html, &text, &mjml] {
        assert!(!personalize::has_marker_chars(doc), "a marker is left");
    }
    // The first editor stands in for the reader; the unsubscribe link is inert.
    assert!(html.contains("ana@news.example.org"));
    assert!(text.contains("https://news.example.org/brief/u/example-not-a-real-link"));
    assert!(html.starts_with("<!doctype html>"));
    // By path as well as by slug; the default output folder is dist/<slug>/.
    let o = brief(
        dir.path(),
        &["build", "--edition", "editions/2026-12-04.md"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("dist/2026-12-04/email.html").is_file());
}

#[test]
fn a_failed_build_still_writes_the_composed_mjml() {
    let dir = newsletter();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/credit.mjml.hbs"),
        "<mj-section><mj-column><mj-carousel></mj-carousel></mj-column></mj-section>\n",
    )
    .unwrap();
    let o = brief(dir.path(), &["build", "--edition", "2026-11-20"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let line: usize = err
        .split("composed MJML of 2026-11-20, line ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no composed position in {err}"));
    let mjml = std::fs::read_to_string(dir.path().join("dist/2026-11-20/email.mjml"))
        .expect("email.mjml is written");
    assert!(mjml.lines().nth(line - 1).unwrap().contains("<mj-carousel"));
    assert!(!dir.path().join("dist/2026-11-20/email.html").exists());
}

#[test]
fn build_of_a_missing_edition_fails_cleanly() {
    let dir = newsletter();
    let o = brief(dir.path(), &["build", "--edition", "2030-01-01"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("build_missing_edition", stderr(&o));
}

#[test]
fn a_located_error_is_printed_once_without_a_second_prefix() {
    let dir = newsletter();
    let o = brief(
        dir.path(),
        &["send", "--edition", "2030-01-01", "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        "editions/2030-01-01.md:1:1: error: cannot read edition: No such file or directory (os error 2)"
    );
}

#[test]
fn check_reports_every_problem_in_every_file() {
    let dir = newsletter();
    std::fs::write(
        dir.path().join("editions/broken-a.md"),
        "+++\ntitle = \"\"\ndate = 2026-11-20\naudience = [\"readrs\"]\n[[read_more]]\ntitle = \"x\"\nurl = \"/rel\"\n+++\nx\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("editions/broken-b.md"),
        "+++\ntitle = \"B\"\ndate = 2026-11-20\nsend_at = 2026-11-20T07:00:00\n+++\n[x](javascript:void)\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("editions/unknown-list.md"),
        "+++\ntitle = \"C\"\ndate = 2026-11-20\naudience = [\"readrs\"]\n+++\nx\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/heder.mjml.hbs"), "x").unwrap();
    let o = brief(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("check_every_problem", stdout(&o));
    assert!(
        stderr(&o).contains("check found 5 errors"),
        "{}",
        stderr(&o)
    );

    // One edition only, and JSON.
    let o = brief(dir.path(), &["check", "--edition", "broken-b", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = problems.as_array().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}"); // two errors + the template warning
    assert!(problems
        .iter()
        .any(|p| p["line"] == 4 && p["severity"] == "error"));

    let o = brief(dir.path(), &["check", "--edition", "2026-11-20"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn check_reads_the_lists_bad_rows_warn_a_missing_list_is_an_error() {
    let dir = newsletter();
    let readers = dir.path().join("subscribers/readers.csv");
    let mut text = std::fs::read_to_string(&readers).unwrap();
    text.push_str("not-an-address,Bad Row\nann@example.org,Ann\nANN@example.org,Ann again\n");
    std::fs::write(&readers, &text).unwrap();
    let rows = text.lines().count();
    let o = brief(dir.path(), &["check"]);
    // Sending skips bad rows and sends the rest: they warn, they do not fail the check.
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "subscribers/readers.csv:{}:1: warning: `not-an-address` is not an email address",
            rows - 2
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "readers.csv:{}:1: warning: ANN@example.org is already on line {}",
            rows,
            rows - 1
        )),
        "{out}"
    );

    std::fs::remove_file(&readers).unwrap();
    let o = brief(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("error: `newsletter.audience` names the list `readers`, but subscribers/readers.csv does not exist"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn size_warning_above_gmail_clipping() {
    let dir = newsletter();
    let para = "A long paragraph that repeats itself so that the edition grows. ".repeat(20);
    let body: String = (0..120).map(|_| format!("{para}\n\n")).collect();
    std::fs::write(
        dir.path().join("editions/long.md"),
        format!("+++\ntitle = \"Long\"\ndate = 2026-11-20\n+++\n{body}"),
    )
    .unwrap();
    let o = brief(dir.path(), &["build", "--edition", "long"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Gmail clips messages over 102 KB"),
        "{}",
        stderr(&o)
    );
    let o = brief(dir.path(), &["check", "--edition", "long"]);
    assert_eq!(o.status.code(), Some(0), "warnings do not fail check");
    assert!(stdout(&o).contains("1 warning"));
}

// ---------------------------------------------------------------------------------
// The HTML in a real browser (Debian's chromium; scripts/test.sh installs it)

/// Loads `html` at `width` px in headless Chromium and returns the page's scroll width
/// and the left/top of the sponsor's two columns (image, text).
fn measure_in_chromium(html: &str, width: u32) -> (i64, (i64, i64), (i64, i64)) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is needed for this test (Debian package `chromium`; scripts/test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    // The email in an iframe of the exact width (a headless window is never narrower
    // than 500 px); srcdoc keeps it same-origin so the script can measure it.
    let srcdoc = html.replace('&', "&amp;").replace('"', "&quot;");
    let page = format!(
        r#"<!doctype html><html><body style="margin:0"><iframe id="f" style="border:0;width:{width}px;height:3000px" srcdoc="{srcdoc}"></iframe>
<script>
const f = document.getElementById('f');
f.addEventListener('load', () => {{
  const d = f.contentDocument;
  const at = c => {{ const r = d.querySelector(c).getBoundingClientRect(); return Math.round(r.left) + ',' + Math.round(r.top); }};
  document.body.setAttribute('data-result', d.documentElement.scrollWidth + ';' + at('.mj-column-per-38') + ';' + at('.mj-column-per-62'));
}});
</script></body></html>"#
    );
    let file = dir.path().join("page.html");
    std::fs::write(&file, page).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // No network: the edition's image fails at once instead of waiting.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=800,3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom
        .split("data-result=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no measurement in chromium's output: {}", stderr(&out)));
    let nums: Vec<i64> = result
        .split([';', ','])
        .map(|n| n.parse().expect("a number"))
        .collect();
    (nums[0], (nums[1], nums[2]), (nums[3], nums[4]))
}

#[test]
fn html_is_responsive_in_chromium() {
    let dir = newsletter();
    let o = brief(dir.path(), &["build", "--edition", "2026-11-20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(dir.path().join("dist/2026-11-20/email.html")).unwrap();

    // Phone: nothing wider than the screen, the sponsor's columns stacked.
    let (scroll, image, text) = measure_in_chromium(&html, 375);
    assert!(
        scroll <= 375,
        "horizontal scroll at 375 px: content is {scroll} px wide"
    );
    assert_eq!(
        image.0, text.0,
        "columns side by side at 375 px: {image:?} {text:?}"
    );
    assert!(text.1 > image.1);

    // Desktop: the 600 px newsletter, the columns side by side.
    let (scroll, image, text) = measure_in_chromium(&html, 640);
    assert!(scroll <= 640, "horizontal scroll at 640 px: {scroll}");
    assert!(
        text.0 > image.0,
        "columns stacked at 640 px: {image:?} {text:?}"
    );
}
