//! Shared by tests/archive.rs and tests/preview.rs: a temp copy of the sample
//! newsletter at the repository root, and the real `brief` binary run on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const SECRET: &str = "N3pkyC/G1F1dci2+IoXPspYLc9UlAzrTDyVWjofTMpc=";

pub struct Newsletter {
    pub dir: tempfile::TempDir,
}

impl Newsletter {
    /// A copy of the sample newsletter (brief.toml, editions, templates, subscribers).
    pub fn sample() -> Newsletter {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(root.join("brief.toml"), dir.path().join("brief.toml"))
            .expect("copy brief.toml");
        for folder in ["editions", "templates", "subscribers"] {
            copy_dir(&root.join(folder), &dir.path().join(folder));
        }
        Newsletter { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    pub fn command(&self, now: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brief"));
        cmd.current_dir(self.dir.path())
            .env("BRIEF_SECRET", SECRET)
            .env("BRIEF_NOW", now)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    // Each test binary compiles this module; not every one uses every helper.
    #[allow(dead_code)]
    pub fn brief(&self, now: &str, args: &[&str]) -> Output {
        self.command(now).args(args).output().expect("run brief")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Every file under `dir`, as (path relative to dir with `/`, absolute path).
#[allow(dead_code)]
pub fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}
