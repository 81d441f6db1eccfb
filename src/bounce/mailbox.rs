//! Streaming mailbox readers: one message in memory at a time, each cut at
//! [`MAX_MESSAGE`], so a mailbox of any size is read in flat memory and linear time.
//! Used by `brief bounces` and by `brief unsubscribe --from-maildir/--from-mbox`.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The most of one message that is read; the rest is skipped (and the message marked
/// `truncated`). Reports put their findings first, so this loses nothing real.
pub const MAX_MESSAGE: usize = 2 * 1024 * 1024;
/// The Maildir folder where messages that cannot be used are moved aside.
pub const REJECTED: &str = ".brief-rejected";

/// One message read from a mailbox.
#[derive(Debug)]
pub struct MailMessage {
    /// For reports: the file name in the maildir, or `FILE#n` for an mbox.
    pub source: String,
    /// The file of a maildir message (None for an mbox).
    pub path: Option<PathBuf>,
    /// At most [`MAX_MESSAGE`] bytes.
    pub raw: Vec<u8>,
    /// The message was longer than [`MAX_MESSAGE`] and was cut.
    pub truncated: bool,
}

/// A Maildir (`new/`, `cur/`, `tmp/`).
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// Opens a maildir: it must have a `new/` or a `cur/` folder.
    pub fn open(root: &Path) -> Result<Maildir> {
        if !root.join("new").is_dir() && !root.join("cur").is_dir() {
            bail!(
                "{} is not a maildir (it has no new/ or cur/ folder)",
                root.display()
            );
        }
        Ok(Maildir {
            root: root.to_path_buf(),
        })
    }

    /// The messages not yet processed (`new/`), in name order (delivery order for the
    /// usual `time.unique.host` names). Only names are listed up front; each message
    /// is read when the iterator reaches it.
    pub fn new_messages(&self) -> Result<MaildirIter> {
        self.messages(&["new"])
    }

    /// The messages of `new/` and then `cur/`.
    pub fn all_messages(&self) -> Result<MaildirIter> {
        self.messages(&["new", "cur"])
    }

    fn messages(&self, folders: &[&str]) -> Result<MaildirIter> {
        let mut paths = Vec::new();
        for sub in folders {
            let folder = self.root.join(sub);
            let mut names = Vec::new();
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot read {}", folder.display()))
                }
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("cannot read {}", folder.display()))?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && entry.file_type().is_ok_and(|t| t.is_file()) {
                    names.push(entry.path());
                }
            }
            names.sort();
            paths.extend(names);
        }
        Ok(MaildirIter {
            paths: paths.into_iter(),
        })
    }

    /// Moves a processed message from `new/` to `cur/` with the Seen flag (`:2,S`),
    /// so the next run skips it. A message already in `cur/` stays where it is.
    pub fn mark_processed(&self, msg: &MailMessage) -> Result<PathBuf> {
        let Some(path) = &msg.path else {
            bail!("{} is not a maildir message", msg.source)
        };
        if path.parent() != Some(self.root.join("new").as_path()) {
            return Ok(path.clone());
        }
        let name = msg.source.split(":2,").next().unwrap_or(&msg.source);
        let target = self.root.join("cur").join(format!("{name}:2,S"));
        std::fs::create_dir_all(self.root.join("cur"))
            .with_context(|| format!("cannot create {}", self.root.join("cur").display()))?;
        std::fs::rename(path, &target)
            .with_context(|| format!("cannot move {} to {}", path.display(), target.display()))?;
        Ok(target)
    }

    /// Moves a message that cannot be used (too large, no valid request) aside to
    /// `.brief-rejected/`, where an operator can look at it and no run reads it again.
    pub fn move_aside(&self, msg: &MailMessage) -> Result<PathBuf> {
        let Some(path) = &msg.path else {
            bail!("{} is not a maildir message", msg.source)
        };
        let folder = self.root.join(REJECTED);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let target = folder.join(&msg.source);
        std::fs::rename(path, &target)
            .with_context(|| format!("cannot move {} to {}", path.display(), target.display()))?;
        Ok(target)
    }
}

/// The messages of a maildir, read one at a time.
#[derive(Debug)]
pub struct MaildirIter {
    paths: std::vec::IntoIter<PathBuf>,
}

impl Iterator for MaildirIter {
    type Item = Result<MailMessage>;

    fn next(&mut self) -> Option<Result<MailMessage>> {
        let path = self.paths.next()?;
        Some(read_bounded(&path).map(|(raw, truncated)| {
            MailMessage {
                source: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: Some(path),
                raw,
                truncated,
            }
        }))
    }
}

fn read_bounded(path: &Path) -> Result<(Vec<u8>, bool)> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut raw = Vec::new();
    file.take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let truncated = raw.len() > MAX_MESSAGE;
    raw.truncate(MAX_MESSAGE);
    Ok((raw, truncated))
}

/// An mbox file (mboxo or mboxrd), read one message at a time: a message starts at
/// a `From ` line after a blank line (or at the top); `>From ` lines are unquoted.
pub struct Mbox<R> {
    input: R,
    name: String,
    count: usize,
    /// The `From ` line of the next message has been read already.
    at_separator: bool,
    line: Vec<u8>,
    /// A line longer than this is cut: the rest of it is skipped.
    line_cap: usize,
    /// The last line read was cut at `line_cap`.
    line_cut: bool,
}

impl Mbox<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Mbox::new(BufReader::new(file), &path.display().to_string()))
    }
}

impl<R: BufRead> Mbox<R> {
    /// Reads an mbox from `input`; `name` is used for sources (`NAME#1`, `NAME#2`…).
    pub fn new(input: R, name: &str) -> Self {
        Mbox {
            input,
            name: name.to_string(),
            count: 0,
            at_separator: false,
            line: Vec::new(),
            line_cap: MAX_MESSAGE,
            line_cut: false,
        }
    }

    /// The next message, or None at the end of the file.
    pub fn next_message(&mut self) -> Result<Option<MailMessage>> {
        let mut raw = Vec::new();
        let mut truncated = false;
        let mut started = self.at_separator;
        let mut previous_blank = true;
        loop {
            if !self.read_line()? {
                break;
            }
            let line = &self.line;
            if previous_blank && line.starts_with(b"From ") {
                if started {
                    self.at_separator = true;
                    return Ok(Some(self.finish(raw, truncated)));
                }
                started = true;
                previous_blank = false;
                continue;
            }
            previous_blank = line == b"\n" || line == b"\r\n";
            if !started {
                // Text before the first `From ` line is no message of the mbox.
                continue;
            }
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            let line = if quoted > 0 && line[quoted..].starts_with(b"From ") {
                &line[1..]
            } else {
                &line[..]
            };
            if self.line_cut || raw.len() + line.len() > MAX_MESSAGE {
                truncated = true;
            } else {
                raw.extend_from_slice(line);
            }
        }
        self.at_separator = false;
        if !started {
            return Ok(None);
        }
        Ok(Some(self.finish(raw, truncated)))
    }

    fn finish(&mut self, mut raw: Vec<u8>, truncated: bool) -> MailMessage {
        // The blank line before the next `From ` belongs to the mbox, not the message.
        if raw.ends_with(b"\r\n\r\n") {
            raw.truncate(raw.len() - 2);
        } else if raw.ends_with(b"\n\n") {
            raw.pop();
        }
        self.count += 1;
        MailMessage {
            source: format!("{}#{}", self.name, self.count),
            path: None,
            raw,
            truncated,
        }
    }

    /// Reads one line (with its `\n`) into `self.line`, keeping at most `line_cap`
    /// bytes of it. False at the end of the input.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        self.line_cut = false;
        let mut any = false;
        loop {
            let buf = self.input.fill_buf().context("cannot read the mbox")?;
            if buf.is_empty() {
                return Ok(any);
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let room = self.line_cap.saturating_sub(self.line.len());
            self.line_cut |= chunk.len() > room;
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = chunk.len();
            self.input.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> Vec<MailMessage> {
        let mut mbox = Mbox::new(data, "box");
        let mut out = Vec::new();
        while let Some(m) = mbox.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn splits_mbox_and_unquotes_from_lines() {
        let msgs = all(b"From a@b Thu Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From here\n\nFrom c@d Thu Jan  1 00:00:00 2024\nSubject: two\n\nsecond\n");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].raw, b"Subject: one\n\nbody\nFrom here\n");
        assert_eq!(msgs[0].source, "box#1");
        assert_eq!(msgs[1].raw, b"Subject: two\n\nsecond\n");
        assert_eq!(msgs[1].source, "box#2");
    }

    #[test]
    fn a_from_line_inside_a_paragraph_is_body() {
        let msgs = all(b"From a@b x\nSubject: one\n\nline\nFrom here on\n");
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].raw.ends_with(b"From here on\n"));
    }

    #[test]
    fn a_huge_message_is_cut_not_kept() {
        let mut data = b"From a@b x\nSubject: big\n\n".to_vec();
        let line = vec![b'x'; 1000];
        for _ in 0..(MAX_MESSAGE / 1000 + 10) {
            data.extend_from_slice(&line);
            data.push(b'\n');
        }
        data.extend_from_slice(b"\nFrom c@d y\nSubject: small\n\nok\n");
        let msgs = all(&data);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].truncated && msgs[0].raw.len() <= MAX_MESSAGE);
        assert!(!msgs[1].truncated);
    }

    #[test]
    fn empty_and_junk_inputs() {
        assert!(all(b"").is_empty());
        assert!(all(b"no separator at all\n").is_empty());
        let one_long_line = vec![b'y'; MAX_MESSAGE * 2];
        let mut data = b"From a@b x\n".to_vec();
        data.extend_from_slice(&one_long_line);
        let msgs = all(&data);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].truncated && msgs[0].raw.len() <= MAX_MESSAGE);
    }
}
