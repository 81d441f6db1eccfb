//! The web archive folder (`[archive] out`, written by `brief archive`), served as
//! static files: no path may leave the folder, and a folder that does not exist yet
//! is simply "not found".

use crate::config::Config;
use anyhow::{bail, Result};
use percent_encoding::percent_decode_str;
use std::path::{Component, Path, PathBuf};

/// Refuses to serve an archive folder that holds (or is) the config, the subscriber
/// lists, the state database or the outbox: everything in it is public.
pub(super) fn refuse_private_files(config: &Config, root: &Path) -> Result<()> {
    let served = real_path(root);
    let private = [
        ("the config", config.path.clone()),
        ("the subscriber lists", config.subscribers_dir()),
        ("the state database", config.state_path()),
        ("the outbox", config.outbox_dir()),
    ];
    for (what, path) in private {
        let path = real_path(&path);
        if path.starts_with(&served) {
            bail!(
                "[archive] out = {:?} ({}) contains {what} ({}): brief serve publishes \
                 every file in it. Point `out` at a folder of its own, e.g. out = \"site\"",
                config.archive.out.display().to_string(),
                served.display(),
                path.display(),
            );
        }
    }
    Ok(())
}

/// `path` made absolute, with `.` and `..` resolved and the symbolic links of the part
/// that exists followed (the rest may not exist yet).
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = parent;
    }
    clean
}

/// A file found for a request path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    File {
        path: PathBuf,
        content_type: &'static str,
        cache_control: &'static str,
    },
    /// A folder asked for without its trailing slash: where to send the client
    /// (relative, so it works behind a proxy that strips a prefix).
    AddSlash(String),
    NotFound,
}

/// Resolves `rel` (the request path with the base path removed, starting with `/`)
/// to a file under `root`.
pub(super) fn lookup(root: &Path, rel: &str) -> Lookup {
    let Ok(decoded) = percent_decode_str(rel).decode_utf8() else {
        return Lookup::NotFound;
    };
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| !safe_segment(s)) {
        return Lookup::NotFound;
    }
    let Ok(root) = root.canonicalize() else {
        return Lookup::NotFound;
    };
    let mut path = root.clone();
    path.extend(&segments);
    let Ok(mut real) = path.canonicalize() else {
        return Lookup::NotFound;
    };
    // A symbolic link inside the folder must not lead out of it.
    if !real.starts_with(&root) {
        return Lookup::NotFound;
    }
    let mut rel_file: Vec<&str> = segments.clone();
    if real.is_dir() {
        if !decoded.ends_with('/') {
            let last = segments.last().copied().unwrap_or("");
            return if last.is_empty() {
                Lookup::NotFound
            } else {
                Lookup::AddSlash(format!("{}/", encode_segment(last)))
            };
        }
        real = real.join("index.html");
        rel_file.push("index.html");
        if !real.is_file() {
            return Lookup::NotFound;
        }
    } else if decoded.ends_with('/') || !real.is_file() {
        return Lookup::NotFound;
    }
    Lookup::File {
        content_type: content_type(&real),
        cache_control: cache_control(&rel_file),
        path: real,
    }
}

fn safe_segment(s: &str) -> bool {
    s != ".."
        && s != "."
        && !s.starts_with('.')
        && !s.contains(['\\', '\0'])
        && !s.chars().any(char::is_control)
}

fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%2E", ".")
}

/// The index and the feed change with every edition: short. Edition pages rarely
/// change after publication: longer. Other files (images): a day.
fn cache_control(rel_file: &[&str]) -> &'static str {
    match rel_file {
        ["index.html"] | ["feed.xml"] | ["atom.xml"] => "public, max-age=300",
        [_, "index.html"] => "public, max-age=3600",
        _ => "public, max-age=86400",
    }
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "xml" => {
            if path
                .file_name()
                .is_some_and(|n| n == "feed.xml" || n == "atom.xml")
            {
                "application/atom+xml; charset=utf-8"
            } else {
                "application/xml; charset=utf-8"
            }
        }
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("2024-10-25")).unwrap();
        std::fs::write(root.join("index.html"), "i").unwrap();
        std::fs::write(root.join("feed.xml"), "f").unwrap();
        std::fs::write(root.join("2024-10-25/index.html"), "e").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();

        match lookup(&root, "/") {
            Lookup::File {
                cache_control,
                content_type,
                ..
            } => {
                assert_eq!(cache_control, "public, max-age=300");
                assert_eq!(content_type, "text/html; charset=utf-8");
            }
            other => panic!("{other:?}"),
        }
        match lookup(&root, "/2024-10-25/") {
            Lookup::File { cache_control, .. } => assert_eq!(cache_control, "public, max-age=3600"),
            other => panic!("{other:?}"),
        }
        match lookup(&root, "/feed.xml") {
            Lookup::File { content_type, .. } => {
                assert!(content_type.starts_with("application/atom+xml"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lookup(&root, "/2024-10-25"),
            Lookup::AddSlash("2024-10-25/".into())
        );
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/2024-10-25/../../secret.txt",
            "/..%2fsecret.txt",
            "/missing",
            "/index.html/",
        ] {
            assert_eq!(lookup(&root, bad), Lookup::NotFound, "{bad}");
        }
        assert_eq!(lookup(&dir.path().join("nowhere"), "/"), Lookup::NotFound);
    }
}
