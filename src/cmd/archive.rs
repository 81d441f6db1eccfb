//! `brief archive [--out DIR] [--all]`: write the static web archive.

use crate::cli::ArchiveArgs;
use anyhow::Result;
use brief::archive;
use brief::config::Config;
use brief::exit::Outcome;

pub(super) fn run(config: &Config, args: &ArchiveArgs) -> Result<Outcome> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| config.resolve(&config.archive.out));
    let report = archive::build(config, &out, args.all)?;
    for w in &report.warnings {
        eprintln!("{w}");
    }
    outln!(
        "archived {} edition{} into {} (index.html, feed.xml)",
        report.published.len(),
        if report.published.len() == 1 { "" } else { "s" },
        report.out.display()
    );
    if !report.not_due.is_empty() {
        outln!(
            "  left out (not sent, and send_at not passed or not set; --all includes them): {}",
            report.not_due.join(", ")
        );
    }
    Ok(Outcome::Done)
}
