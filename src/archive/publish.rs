//! Replacing the archive folder in one step, so `brief serve` (or any web server)
//! never sees a half-written site: the new site is written into a folder beside the
//! target, then the two are swapped (Linux: `renameat2(RENAME_EXCHANGE)`, atomic; other
//! systems, or file systems without it: two renames in a row), and the old one is
//! removed.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Fills a fresh folder beside `out` with `fill`, then puts it in `out`'s place.
/// Refuses to replace a folder that holds `newsletter_root` or that does not look like
/// an archive (a non-empty folder without `index.html`), so a mistyped `--out` cannot
/// delete anything else.
pub fn replace_dir(
    out: &Path,
    newsletter_root: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{} cannot be the archive folder", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = match fs::symlink_metadata(out) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", out.display())),
    };
    if existing.is_some() {
        check_replaceable(out, newsletter_root)?;
    }
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    if let Err(e) = fill(&staging) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    let swapped = if existing.is_some() {
        exchange(&staging, out)
    } else {
        fs::rename(&staging, out)
    };
    if let Err(e) = swapped {
        let _ = fs::remove_dir_all(&staging);
        return Err(e).with_context(|| format!("cannot put the new archive in {}", out.display()));
    }
    if existing.is_some() {
        // `staging` now holds the previous site.
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove the old archive {}", staging.display()))?;
    }
    Ok(())
}

fn check_replaceable(out: &Path, newsletter_root: &Path) -> Result<()> {
    let real = out
        .canonicalize()
        .with_context(|| format!("cannot look at {}", out.display()))?;
    if !real.is_dir() {
        bail!("{} exists and is not a folder", out.display());
    }
    if let Ok(root) = newsletter_root.canonicalize() {
        if root.starts_with(&real) {
            bail!(
                "{} holds the newsletter itself: choose another archive folder",
                out.display()
            );
        }
    }
    let empty = fs::read_dir(&real)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_none();
    if !empty && !real.join("index.html").is_file() {
        bail!(
            "{} is not empty and has no index.html, so it does not look like an archive: \
             brief will not replace it (remove it or choose another folder)",
            out.display()
        );
    }
    Ok(())
}

/// Swaps two paths: afterwards `a` holds what was at `b` and `b` what was at `a`.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // Not supported by this kernel or file system.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            exchange_by_renames(a, b)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    exchange_by_renames(a, b)
}

/// Not atomic: `b` is missing for the moment between the first two renames.
fn exchange_by_renames(a: &Path, b: &Path) -> io::Result<()> {
    let mut aside = b.as_os_str().to_owned();
    aside.push(format!(".old-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    fs::rename(b, &aside)?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&aside, b);
        return Err(e);
    }
    fs::rename(&aside, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_nothing_beside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("site");
        let root = dir.path().join("newsletter");
        fs::create_dir(&root).unwrap();
        replace_dir(&out, &root, |d| Ok(fs::write(d.join("index.html"), "one")?)).unwrap();
        assert_eq!(fs::read_to_string(out.join("index.html")).unwrap(), "one");
        replace_dir(&out, &root, |d| Ok(fs::write(d.join("index.html"), "two")?)).unwrap();
        assert_eq!(fs::read_to_string(out.join("index.html")).unwrap(), "two");
        // A failed build leaves the old site in place.
        let err = replace_dir(&out, &root, |_| bail!("broken"));
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(out.join("index.html")).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn refuses_folders_that_are_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("docs");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("notes.txt"), "keep me").unwrap();
        let err = replace_dir(&other, dir.path(), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("does not look like an archive"));
        assert!(other.join("notes.txt").exists());
        let err = replace_dir(dir.path(), &dir.path().join("x"), |_| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("newsletter itself") || err.to_string().contains("archive")
        );
    }
}
