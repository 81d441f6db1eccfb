//! `brief build --edition E [--out DIR]`: compose and compile one edition and write
//! `email.mjml`, `email.html` and `email.txt`, filled in for a sample reader so the
//! files can be opened as they are.

use crate::cli::BuildArgs;
use anyhow::{bail, Context, Result};
use brief::compile::{self, Compiled};
use brief::config::Config;
use brief::diag::Diagnostics;
use brief::exit::Outcome;
use brief::personalize::Escape;
use brief::sample::SampleReader;
use std::path::Path;

pub(crate) fn run(config: &Config, args: BuildArgs) -> Result<Outcome> {
    let sample = SampleReader::load(config);
    let compiled = match compile::build(config, &args.edition, &sample.columns()) {
        Ok(c) => c,
        Err(e) => match e.downcast_ref::<Diagnostics>() {
            // One problem per line, then a short final error.
            Some(problems) => {
                for p in &problems.0 {
                    eprintln!("{p}");
                }
                write_failed_mjml(config, &args, &sample);
                bail!("cannot build edition `{}`", args.edition);
            }
            None => return Err(e),
        },
    };
    for w in &compiled.warnings {
        eprintln!("{w}");
    }
    let out = args.out.unwrap_or_else(|| {
        let dist = config.root.join("dist").join(&compiled.slug);
        // "dist/x" rather than "./dist/x" in what we print.
        dist.strip_prefix(".")
            .map_or(dist.clone(), Path::to_path_buf)
    });
    let files = write(&out, &compiled, &sample, config)?;
    outln!("built {} into {}", compiled.slug, out.display());
    for (name, bytes) in files {
        outln!("  {name:<11} {:>8}", human_size(bytes));
    }
    Ok(Outcome::Done)
}

/// After a failed compile, still writes `email.mjml` (when the edition composes) so the
/// positions "composed MJML of …, line L" in the errors can be looked up.
fn write_failed_mjml(config: &Config, args: &BuildArgs, sample: &SampleReader) {
    let Some((slug, mjml)) = compile::composed_mjml(config, &args.edition, &sample.columns())
    else {
        return;
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| config.root.join("dist").join(&slug));
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join("email.mjml"), mjml))
        .is_ok();
    if written {
        eprintln!(
            "the composed MJML is in {}",
            out.join("email.mjml").display()
        );
    }
}

/// Writes the three files, filled in for the sample reader; returns their names and
/// sizes.
fn write(
    out: &Path,
    compiled: &Compiled,
    sample: &SampleReader,
    config: &Config,
) -> Result<Vec<(&'static str, usize)>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files = Vec::new();
    for (name, doc, escape) in [
        ("email.mjml", &compiled.mjml, Escape::Html),
        ("email.html", &compiled.html, Escape::Html),
        ("email.txt", &compiled.text, Escape::None),
    ] {
        let content = sample.fill(config, doc, escape, "example-not-a-real-link");
        let path = out.join(name);
        std::fs::write(&path, &content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.push((name, content.len()));
    }
    Ok(files)
}

fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}
