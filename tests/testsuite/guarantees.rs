//! Guarantees no template override can remove: every message carries the reader's
//! unsubscribe link and the postal address in both parts. `check`, `build` and `send`
//! (which `dispatch` runs) refuse an override that drops them, naming the template.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample newsletter with a short readers list and no template overrides.
fn newsletter() -> tempfile::TempDir {
    let dir = crate::harness::sample_folder(&["2026-11-20"], 2);
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    dir
}

fn brief(dir: &Path, args: &[&str]) -> Output {
    crate::harness::brief_as_user(dir, args)
}

fn default_template(file: &str) -> String {
    std::fs::read_to_string(repo().join("templates").join(file)).unwrap()
}

/// Writes `templates/<file>` as the default with `from` replaced by `to`.
fn override_template(dir: &Path, file: &str, from: &str, to: &str) {
    let default = default_template(file);
    assert!(default.contains(from), "{file} has no {from:?}");
    std::fs::write(dir.join("templates").join(file), default.replace(from, to)).unwrap();
}

/// `check`, `build` and `send` all refuse, each saying `expected`; nothing is sent.
fn refused_everywhere(dir: &Path, expected: &[&str]) {
    for args in [
        &["check"][..],
        &["build", "--edition", "2026-11-20"],
        &["send", "--edition", "2026-11-20"],
    ] {
        let o = brief(dir, args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(1), "{args:?} did not fail: {said}");
        for e in expected {
            assert!(said.contains(e), "{args:?} does not say {e:?}: {said}");
        }
    }
    assert!(
        !dir.join("outbox/2026-11-20").exists()
            || std::fs::read_dir(dir.join("outbox/2026-11-20"))
                .unwrap()
                .next()
                .is_none(),
        "a message was written"
    );
}

#[test]
fn the_defaults_pass() {
    let dir = newsletter();
    let o = brief(dir.path(), &["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_footer_without_the_unsubscribe_link_is_refused() {
    let dir = newsletter();
    override_template(
        dir.path(),
        "footer.mjml.hbs",
        "<a href=\"{{unsubscribe_url}}\" style=\"color: #5c6068;\">Unsubscribe</a>",
        "Reply to unsubscribe",
    );
    refused_everywhere(
        dir.path(),
        &[
            "templates/footer.mjml.hbs:1:1: error: every message must carry a link to `{{unsubscribe_url}}` in its HTML part",
        ],
    );
}

#[test]
fn a_footer_without_the_postal_address_is_refused() {
    let dir = newsletter();
    // Only on the web version: messages lose it.
    override_template(
        dir.path(),
        "footer.mjml.hbs",
        "{{newsletter.postal_address}}",
        "{{#if web}}{{newsletter.postal_address}}{{/if}}",
    );
    refused_everywhere(
        dir.path(),
        &["footer.mjml.hbs:1:1: error: every message must carry the postal address"],
    );
}

#[test]
fn a_layout_without_the_footer_is_refused() {
    let dir = newsletter();
    override_template(dir.path(), "layout.mjml.hbs", "{{> footer}}", "");
    refused_everywhere(
        dir.path(),
        &["templates/layout.mjml.hbs:1:1: error: every message must carry a link to `{{unsubscribe_url}}` and the postal address"],
    );
}

#[test]
fn a_text_template_without_them_is_refused() {
    let dir = newsletter();
    let text = default_template("email.txt.hbs");
    let cut = text.find("--\nYou receive").unwrap();
    std::fs::write(dir.path().join("templates/email.txt.hbs"), &text[..cut]).unwrap();
    refused_everywhere(
        dir.path(),
        &["templates/email.txt.hbs:1:1: error: every message must carry the link `{{unsubscribe_url}}` and the postal address `{{newsletter.postal_address}}` in its text part"],
    );
}
