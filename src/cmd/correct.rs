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
    let numbered = correct::number_of(&existing, &note);
    let correction = existing
        .get(numbered.number - 1)
        .cloned()
        .unwrap_or(Correction {
            at: clock::now(),
            note: note.trim().to_string(),
        });

    // The mail is prepared first: when it cannot go (nobody accepted the edition, its
    // send is not settled, a template is broken), nothing is recorded either.
    let plan = if args.mail {
        let request = Request {
            edition: edition.slug.clone(),
            test: args.test,
            to: args.to,
            resend_in_doubt: args.resend_in_doubt,
            dry_run: args.dry_run,
            progress: std::io::stderr().is_terminal(),
        };
        let message = correct::message(config, &edition, &correction)?;
        let key = correct::journal_key(&edition.slug, numbered.number);
        Some(Plan::prepare_correction(
            config,
            request,
            &edition.slug,
            key,
            message,
        )?)
    } else {
        None
    };

    // A dry run and a test change nothing on disk; a real run records the note once.
    let record = !args.dry_run && !args.test;
    if record && numbered.new {
        correct::record(&edition.path, &correction.note, correction.at)?;
    }
    let verb = match (numbered.new, record) {
        (true, true) => "recorded",
        (true, false) => "would be recorded",
        (false, _) => "already recorded",
    };
    outln!(
        "correction {} of {} {verb} in {}",
        numbered.number,
        edition.slug,
        correct::file_path(&edition.path).display()
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

    let Some(plan) = plan else {
        return Ok(Outcome::Done);
    };
    let key = plan.slug().to_string();
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
