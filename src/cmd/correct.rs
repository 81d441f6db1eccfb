//! `brief correct --edition E --note FILE [--mail] [--dry-run] [--test]`: record a dated
//! correction next to the edition ([`brief::correct`]), rebuild the archive when it has
//! been published, and with `--mail` send the correction message to the readers who
//! accepted the edition, through the send path (exit codes as `brief send`).

use crate::cli::CorrectArgs;
use anyhow::Result;
use brief::config::Config;
use brief::correct::{self, Correction};
use brief::edition;
use brief::exit::Outcome;
use brief::send::{Execution, Plan, Request};
use brief::{archive, clock};
use std::io::IsTerminal;

pub(super) fn run(config: &Config, args: CorrectArgs) -> Result<Outcome> {
    let edition_path = edition::resolve(config, &args.edition);
    let edition = edition::load(&edition_path).map_err(anyhow::Error::new)?;
    let note = correct::read_note(&args.note)?;
    let existing = correct::load(&edition.path).map_err(anyhow::Error::new)?;
    let corrections_file = correct::file_path(&edition.path);

    // A dry run and a test change nothing on disk; a real run records the note once.
    let record = !args.dry_run && !args.test;
    let numbered = if record {
        correct::record(&edition.path, &note, clock::now())?
    } else {
        correct::number_of(&existing, &note)
    };
    let correction = correct::load(&edition.path)
        .map_err(anyhow::Error::new)?
        .into_iter()
        .nth(numbered.number - 1)
        .unwrap_or(Correction {
            at: clock::now(),
            note: note.trim().to_string(),
        });
    let verb = match (numbered.new, record) {
        (true, true) => "recorded",
        (true, false) => "would be recorded",
        (false, _) => "already recorded",
    };
    outln!(
        "correction {} of {} {verb} in {}",
        numbered.number,
        edition.slug,
        corrections_file.display()
    );
    if record && numbered.new {
        let out = config.resolve(&config.archive.out);
        if out.is_dir() {
            archive::build(config, &out, false)?;
            outln!("archive rebuilt in {}", out.display());
        } else {
            outln!("run `brief archive` to publish it on the edition's page and in the feed");
        }
    }

    if !args.mail {
        return Ok(Outcome::Done);
    }
    let message = correct::message(config, &edition, &correction)?;
    let request = Request {
        edition: edition.slug.clone(),
        test: args.test,
        to: args.to,
        resend_in_doubt: args.resend_in_doubt,
        dry_run: args.dry_run,
        progress: std::io::stderr().is_terminal(),
    };
    let key = correct::journal_key(&edition.slug, numbered.number);
    let plan = Plan::prepare_correction(config, request, &edition.slug, key.clone(), message)?;
    match plan.execute()? {
        Execution::Locked(lock) => {
            eprintln!(
                "another `brief correct` of {key} is running (lock {}); not starting",
                lock.display()
            );
            Ok(Outcome::Locked)
        }
        Execution::Ran(report) => {
            super::send::print_report(&report, false, args.resend_in_doubt)?;
            super::send::outcome(&report)
        }
    }
}
