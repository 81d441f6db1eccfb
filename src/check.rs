//! What `brief check` finds: the config (loading it already validated it), every
//! template and every edition (or one), each edition composed and compiled as
//! `brief send` would, the lists, the DKIM key and the CA file. Never stops at the
//! first problem; `brief check`, `brief dispatch` and `brief preview` show the same.

use crate::compile;
use crate::compose::Composer;
use crate::config::{Config, Tls};
use crate::deliver::smtp;
use crate::diag::{nearest, Diagnostic};
use crate::edition::{self, Edition};

/// What `brief check` found.
pub struct Findings {
    pub editions: usize,
    pub templates: usize,
    pub problems: Vec<Diagnostic>,
    /// With `[tracking]`: each edition's HTML size with its tracked links and without.
    pub tracked_sizes: Vec<TrackedSize>,
}

/// Tracked links make the HTML longer, and Gmail clips at 102 KB.
pub struct TrackedSize {
    pub slug: String,
    pub links: usize,
    pub html_bytes: usize,
    pub untracked_html_bytes: usize,
}

/// Checks the templates and the editions (all, or the one named); never stops at the
/// first problem.
pub fn check(config: &Config, only: Option<&str>) -> Findings {
    let mut problems = Vec::new();
    let composer = match Composer::new(config) {
        Ok(c) => {
            problems.extend(c.warnings.iter().cloned());
            Some(c)
        }
        Err(d) => {
            problems.extend(d.0);
            None
        }
    };
    let paths = match only {
        Some(arg) => vec![edition::resolve(config, arg)],
        None => match edition::all_paths(config) {
            Ok(paths) => paths,
            Err(e) => {
                problems.push(Diagnostic::error(
                    config.editions_dir(),
                    1,
                    1,
                    format!("cannot list the editions: {e}"),
                ));
                Vec::new()
            }
        },
    };
    let columns = crate::sample::SampleReader::load(config).columns();
    // Every list an edition or the config sends to, each checked once.
    let mut lists: Vec<String> = config.newsletter.audience.clone();
    let mut tracked_sizes = Vec::new();
    lists.push(config.newsletter.editors.clone());
    for path in &paths {
        match edition::load(path) {
            Err(d) => problems.extend(d.0),
            Ok(e) => {
                problems.extend(audience_problems(config, &e));
                problems.extend(crate::correct::load(&e.path).err());
                lists.extend(e.audience.iter().flatten().cloned());
                if let Some(composer) = &composer {
                    let plain = config.tracking.changes_links().then(|| e.clone());
                    match compile::compile_edition(config, composer, e, &columns) {
                        Ok(compiled) => {
                            if let Some(plain) = plain {
                                tracked_sizes.push(TrackedSize {
                                    slug: compiled.slug.clone(),
                                    links: compiled.links.len(),
                                    html_bytes: compiled.html.len(),
                                    untracked_html_bytes: untracked_size(
                                        config, composer, plain, &columns,
                                    ),
                                });
                            }
                            problems.extend(compiled.warnings);
                        }
                        Err(d) => problems.extend(d.0),
                    }
                }
            }
        }
    }
    problems.extend(crate::correct::template_problems(config));
    problems.extend(crate::serve::signup_template_problems(config));
    problems.extend(dkim_problem(config));
    problems.extend(crate::doctor::rules::bulk_sender_problems(config));
    lists.sort();
    lists.dedup();
    for name in &lists {
        let path = config.list_path(name);
        if config.managed_list(name).is_some() {
            if let Err(e) = crate::audience::ListSource::for_list(config, name) {
                let source = std::fs::read_to_string(&config.path).unwrap_or_default();
                let offset = source.find(&format!("[lists.{name}]")).unwrap_or(0);
                problems.push(Diagnostic::at_offset(
                    &config.path,
                    &source,
                    offset,
                    format!("{e:#}"),
                ));
            }
        } else if path.is_file() {
            problems.extend(crate::audience::check_list(&path));
        } else if config.newsletter.audience.contains(name) {
            problems.push(config_list_missing(config, name, "newsletter.audience"));
        } else if *name == config.newsletter.editors {
            let mut d = config_list_missing(config, name, "newsletter.editors");
            d.severity = crate::diag::Severity::Warning;
            problems.push(d);
        }
    }
    problems.extend(ca_file_problem(config));
    for (key, error, message) in smtp::config_problems(config) {
        let mut d = at_config_key(config, key, message);
        if !error {
            d.severity = crate::diag::Severity::Warning;
        }
        problems.push(d);
    }
    problems.extend(secret_problem(config));
    for (key, error, message) in crate::hooks::config_problems(config) {
        let mut d = at_config_key(config, key, message);
        if !error {
            d.severity = crate::diag::Severity::Warning;
        }
        problems.push(d);
    }
    Findings {
        editions: paths.len(),
        templates: crate::compose::templates::DEFAULTS.len(),
        problems,
        tracked_sizes,
    }
}

/// The HTML size of `e` compiled without `[tracking]`.
fn untracked_size(config: &Config, composer: &Composer, e: Edition, columns: &[String]) -> usize {
    let mut plain = config.clone();
    plain.tracking = crate::config::Tracking::default();
    compile::compile_edition(&plain, composer, e, columns).map_or(0, |c| c.html.len())
}

/// Audience lists named by the edition that have no file under subscribers/.
fn audience_problems(config: &Config, e: &Edition) -> Vec<Diagnostic> {
    let Some(lists) = &e.audience else {
        return Vec::new();
    };
    let existing = existing_lists(config);
    let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
    lists
        .iter()
        .zip(&e.locations.audience)
        .filter(|(name, _)| {
            config.managed_list(name).is_none() && !config.list_path(name).is_file()
        })
        .map(|(name, (line, column))| {
            let hint = match nearest(name, &existing) {
                Some(best) => format!(" (did you mean `{best}`?)"),
                None if existing.is_empty() => String::new(),
                None => format!(" (lists: {})", existing.join(", ")),
            };
            Diagnostic::error(
                &e.path,
                *line,
                *column,
                format!("no list `{name}`: subscribers/{name}.csv does not exist{hint}"),
            )
        })
        .collect()
}

/// A `[dkim]` key that cannot sign, or a key set that loses DKIM credit (located at
/// `key_file` in brief.toml).
fn dkim_problem(config: &Config) -> Option<Diagnostic> {
    let dkim = config.dkim.as_ref()?;
    let (message, severity) = match crate::deliver::dkim::Signer::load(dkim, |p| config.resolve(p))
    {
        Err(e) => (format!("{e:#}"), crate::diag::Severity::Error),
        Ok(signer) => (signer.warning()?, crate::diag::Severity::Warning),
    };
    let source = std::fs::read_to_string(&config.path).unwrap_or_default();
    let offset = source
        .find("[dkim]")
        .and_then(|at| source[at..].find("key_file").map(|k| at + k))
        .unwrap_or(0);
    let mut d = Diagnostic::at_offset(&config.path, &source, offset, message);
    d.severity = severity;
    Some(d)
}

/// A list named in brief.toml that has no file.
fn config_list_missing(config: &Config, name: &str, key: &str) -> Diagnostic {
    at_config_key(
        config,
        key,
        format!("`{key}` names the list `{name}`, but subscribers/{name}.csv does not exist"),
    )
}

/// `smtp.ca_file`, when set, must hold CA certificates (the file is read; no network).
fn ca_file_problem(config: &Config) -> Option<Diagnostic> {
    let path = config.resolve(config.smtp.ca_file.as_ref()?);
    if let Err(e) = smtp::load_ca_file(&path) {
        return Some(at_config_key(config, "smtp.ca_file", format!("{e:#}")));
    }
    if config.smtp.tls == Tls::None {
        let mut d = at_config_key(
            config,
            "smtp.ca_file",
            "`smtp.ca_file` is not used: `smtp.tls` is \"none\"".to_string(),
        );
        d.severity = crate::diag::Severity::Warning;
        return Some(d);
    }
    None
}

/// A secret that is set but weak: an error for SMTP delivery (send refuses it), a
/// warning for the outbox transport.
fn secret_problem(config: &Config) -> Option<Diagnostic> {
    let name = &config.unsubscribe.secret_env;
    let why = crate::token::weakness(std::env::var(name).ok()?.as_bytes())?;
    let message = format!(
        "the secret in ${name} {why}: {}",
        crate::token::HOW_TO_MAKE_A_SECRET
    );
    let mut d = at_config_key(config, "unsubscribe.secret_env", message);
    if config.delivery.transport != crate::config::Transport::Smtp {
        d.severity = crate::diag::Severity::Warning;
    }
    Some(d)
}

/// A problem about a key of brief.toml (located at the key when it can be found).
fn at_config_key(config: &Config, key: &str, message: String) -> Diagnostic {
    let source = std::fs::read_to_string(&config.path).unwrap_or_default();
    let short = key.rsplit('.').next().unwrap_or(key);
    let offset = source.find(&format!("\n{short}")).map_or(0, |i| i + 1);
    Diagnostic::at_offset(&config.path, &source, offset, message)
}

fn existing_lists(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(config.subscribers_dir())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "csv").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}
