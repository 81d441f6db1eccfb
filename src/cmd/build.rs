//! `brief build --edition E [--out DIR]`: compose and compile one edition and write
//! `email.mjml`, `email.html` and `email.txt`, filled in for a sample reader so the
//! files can be opened as they are.

use crate::cli::BuildArgs;
use crate::compile::{self, Compiled};
use crate::config::Config;
use crate::diag::Diagnostics;
use crate::exit::Outcome;
use crate::personalize::{Escape, Template};
use crate::token;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub fn run(config: &Config, args: BuildArgs) -> Result<Outcome> {
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
    println!("built {} into {}", compiled.slug, out.display());
    for (name, bytes) in files {
        println!("  {name:<11} {:>8}", human_size(bytes));
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

/// Writes the three files; returns their names and sizes.
pub fn write(
    out: &Path,
    compiled: &Compiled,
    sample: &SampleReader,
    config: &Config,
) -> Result<Vec<(&'static str, usize)>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let unsubscribe =
        token::unsubscribe_url(&config.newsletter.base_url, "example-not-a-real-link");
    let mut files = Vec::new();
    for (name, doc, escape) in [
        ("email.mjml", &compiled.mjml, Escape::Html),
        ("email.html", &compiled.html, Escape::Html),
        ("email.txt", &compiled.text, Escape::None),
    ] {
        let template = Template::parse(doc);
        let values: Vec<&str> = template
            .fields()
            .iter()
            .map(|f| sample.value(f, &unsubscribe))
            .collect();
        let content = template.render(&values, escape);
        let path = out.join(name);
        std::fs::write(&path, &content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.push((name, content.len()));
    }
    Ok(files)
}

/// Values for the personal fields of a built file: the first row of the editors list
/// when there is one, placeholders otherwise.
pub struct SampleReader {
    fields: BTreeMap<String, String>,
    columns: Vec<String>,
}

impl SampleReader {
    pub fn load(config: &Config) -> SampleReader {
        let mut fields = BTreeMap::new();
        fields.insert("email".to_string(), "reader@example.org".to_string());
        fields.insert("name".to_string(), "Reader".to_string());
        let mut columns: Vec<String> = Vec::new();
        let mut lists: Vec<&str> = config
            .newsletter
            .audience
            .iter()
            .map(String::as_str)
            .collect();
        lists.push(&config.newsletter.editors);
        for list in lists {
            let Ok(mut reader) = csv::Reader::from_path(config.list_path(list)) else {
                continue;
            };
            let Ok(headers) = reader.headers().cloned() else {
                continue;
            };
            let headers: Vec<String> = headers
                .iter()
                .map(|h| h.trim_start_matches('\u{FEFF}').trim().to_string())
                .collect();
            for h in &headers {
                if h != "email" && h != "name" && !h.is_empty() && !columns.contains(h) {
                    columns.push(h.clone());
                    fields.insert(h.clone(), format!("[{h}]"));
                }
            }
            if list == config.newsletter.editors {
                if let Some(Ok(row)) = reader.records().next() {
                    for (h, v) in headers.iter().zip(row.iter()) {
                        if !v.trim().is_empty() {
                            fields.insert(h.clone(), v.trim().to_string());
                        }
                    }
                }
            }
        }
        SampleReader { fields, columns }
    }

    /// The extra columns (besides email and name) the lists have.
    pub fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// The sample value of a personal field (`unsubscribe_url` or `subscriber.<column>`).
    pub fn value<'a>(&'a self, field: &str, unsubscribe: &'a str) -> &'a str {
        if field == crate::personalize::UNSUBSCRIBE_URL {
            return unsubscribe;
        }
        field
            .strip_prefix("subscriber.")
            .and_then(|column| self.fields.get(column))
            .map_or("", String::as_str)
    }
}

pub fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}
