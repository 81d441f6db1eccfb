//! `brief check [--edition E]`: validates the config (loading it already did), every
//! template and every edition (or one), composing and compiling each edition as
//! `brief send` would. Prints every problem; exit 1 if any is an error.

use crate::cli::CheckArgs;
use anyhow::{bail, Result};
use brief::check::check;
use brief::config::Config;
use brief::exit::Outcome;
use std::io::Write;

pub(crate) fn run(config: &Config, args: CheckArgs) -> Result<Outcome> {
    let report = check(config, args.edition.as_deref());
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.problems)?);
    } else {
        for p in &report.problems {
            outln!("{p}");
        }
    }
    if !args.json {
        for s in &report.tracked_sizes {
            outln!(
                "{}: HTML {} with tracking ({} tracked, {} without; Gmail clips over {} KB)",
                s.slug,
                kb(s.html_bytes),
                plural(s.links, "link"),
                kb(s.untracked_html_bytes),
                brief::compile::GMAIL_CLIP_BYTES / 1024
            );
        }
    }
    let errors = report.problems.iter().filter(|p| p.is_error()).count();
    let warnings = report.problems.len() - errors;
    if !args.json {
        outln!(
            "checked {} and {} templates: {} and {}",
            plural(report.editions, "edition"),
            report.templates,
            plural(errors, "error"),
            plural(warnings, "warning"),
        );
    }
    // The report before the error line main prints, even when both go to one pipe.
    std::io::stdout().flush()?;
    if errors > 0 {
        bail!("check found {}", plural(errors, "error"));
    }
    Ok(Outcome::Done)
}

fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
