//! The texts of signup mails: `templates/signup-confirm.txt.hbs` and
//! `templates/welcome.txt.hbs` (a newsletter's own `templates/` folder overrides them),
//! parsed once when `brief serve` starts so a broken template stops it there.

use crate::config::Config;
use crate::diag::Diagnostic;
use anyhow::Result;
use handlebars::Handlebars;
use serde_json::json;

const CONFIRM_FILE: &str = "signup-confirm.txt.hbs";
const WELCOME_FILE: &str = "welcome.txt.hbs";
/// The signup mails' template files, under `templates/`.
pub(crate) const TEMPLATE_FILES: [&str; 2] = [CONFIRM_FILE, WELCOME_FILE];
const DEFAULT_CONFIRM: &str = include_str!("../../../templates/signup-confirm.txt.hbs");
const DEFAULT_WELCOME: &str = include_str!("../../../templates/welcome.txt.hbs");

pub(crate) struct Mails {
    registry: Handlebars<'static>,
    newsletter: serde_json::Value,
}

/// One list as a mail names it.
pub(crate) struct Named<'a> {
    pub title: &'a str,
    pub description: &'a str,
}

impl Mails {
    pub(crate) fn load(config: &Config) -> Result<Mails> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(false);
        registry.register_escape_fn(handlebars::no_escape);
        for (file, default) in [
            (CONFIRM_FILE, DEFAULT_CONFIRM),
            (WELCOME_FILE, DEFAULT_WELCOME),
        ] {
            let path = config.templates_dir().join(file);
            let source = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => default.to_string(),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot read {}", path.display()))
                    )
                }
            };
            registry
                .register_template_string(file, source)
                .map_err(|e| {
                    let (line, col) = e.pos().unwrap_or((1, 1));
                    Diagnostic::error(
                        &path,
                        line,
                        col,
                        format!("template does not parse: {}", e.reason()),
                    )
                })?;
        }
        Ok(Mails {
            registry,
            newsletter: json!({
                "name": config.newsletter.name,
                "postal_address": config.newsletter.postal_address,
            }),
        })
    }

    /// Subject and body of a confirmation mail.
    pub(crate) fn confirm(
        &self,
        email: &str,
        name: &str,
        lists: &[Named<'_>],
        url: &str,
        valid_for: &str,
    ) -> Result<(String, String)> {
        let body = self.registry.render(
            CONFIRM_FILE,
            &json!({
                "newsletter": self.newsletter,
                "subscriber": {"email": email, "name": name},
                "lists": named(lists),
                "confirm_url": url,
                "valid_for": valid_for,
            }),
        )?;
        Ok((
            format!(
                "Confirm your subscription to {}",
                self.newsletter["name"].as_str().unwrap_or("")
            ),
            body,
        ))
    }

    /// Subject and body of a welcome mail.
    pub(crate) fn welcome(
        &self,
        email: &str,
        name: &str,
        lists: &[Named<'_>],
        preferences_url: &str,
    ) -> Result<(String, String)> {
        let body = self.registry.render(
            WELCOME_FILE,
            &json!({
                "newsletter": self.newsletter,
                "subscriber": {"email": email, "name": name},
                "lists": named(lists),
                "preferences_url": preferences_url,
            }),
        )?;
        Ok((
            format!(
                "Welcome to {}",
                self.newsletter["name"].as_str().unwrap_or("")
            ),
            body,
        ))
    }
}

fn named(lists: &[Named<'_>]) -> serde_json::Value {
    lists
        .iter()
        .map(|l| json!({"title": l.title, "description": l.description}))
        .collect()
}

/// `2 days`, `36 hours`, `45 minutes`: how long a link works, for people.
pub(crate) fn for_people(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 2 * 86_400 && s.is_multiple_of(86_400) {
        (s / 86_400, "day")
    } else if s >= 3600 {
        (s / 3600, "hour")
    } else {
        ((s / 60).max(1), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
