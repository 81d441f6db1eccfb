//! `brief init [DIR]`: scaffolds a working newsletter folder: brief.toml, the default
//! templates, a sample edition and two small subscriber lists. Never overwrites.

use crate::cli::InitArgs;
use anyhow::{bail, Context, Result};
use brief::compose::templates::DEFAULTS;
use brief::exit::Outcome;
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("../../brief.toml");
const EDITION: &str = include_str!("../../editions/2026-11-20.md");
const EDITORS: &str = include_str!("../../subscribers/editors.csv");
const READERS: &str = "email,name,city
ada.example@example.org,Ada Example,Ghent
ben.sample@example.org,Ben Sample,Porto
chloe.tester@example.org,Chloé Tester,Lyon
dario.demo@example.org,,Bologna
";

/// The files `brief init` writes, relative to the folder.
pub(crate) fn files() -> Vec<(PathBuf, String)> {
    let mut files = vec![(PathBuf::from("brief.toml"), CONFIG.to_string())];
    for t in DEFAULTS {
        files.push((Path::new("templates").join(t.file), t.source.to_string()));
    }
    // The sample is not scheduled: a new newsletter should not send on its own.
    let edition: String = EDITION
        .lines()
        .filter(|l| !l.starts_with("send_at"))
        .flat_map(|l| [l, "\n"])
        .collect();
    files.push((PathBuf::from("editions/2026-11-20.md"), edition));
    files.push((
        PathBuf::from("subscribers/readers.csv"),
        READERS.to_string(),
    ));
    files.push((
        PathBuf::from("subscribers/editors.csv"),
        EDITORS.to_string(),
    ));
    files
}

pub(crate) fn run(args: InitArgs) -> Result<Outcome> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let files = files();
    let existing: Vec<String> = files
        .iter()
        .map(|(p, _)| dir.join(p))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite existing files (nothing was written): {}",
            existing.join(", ")
        );
    }
    for (rel, content) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        outln!("created {}", path.display());
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", dir.display())
    };
    outln!("next: {cd}brief check && brief build --edition 2026-11-20");
    Ok(Outcome::Done)
}
