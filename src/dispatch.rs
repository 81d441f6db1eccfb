//! Scheduling: where an edition stands against its `send_at` and the journal, and what
//! `brief dispatch` does with it. Pure decisions here (tested below); the command in
//! `cmd::dispatch` acts on them. Time comes only from the caller (`clock::now()`).

use crate::edition::{self, Edition};
use crate::store::{Store, REAL};
use anyhow::Result;
use chrono::{DateTime, FixedOffset, Utc};
use std::path::{Path, PathBuf};

/// Where one edition stands (the STATE column of `brief status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No `send_at` and never sent: dispatch never touches it.
    Unscheduled,
    /// `send_at` is in the future.
    Scheduled,
    /// `send_at` has passed, not started, within `max_lateness`.
    Due,
    /// `send_at` has passed by more than `max_lateness`, not started.
    Late,
    /// A send of it holds the lock now.
    Sending,
    /// Started, recipients left (pending, deferred or in doubt).
    Incomplete,
    /// Every recipient settled.
    Complete,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Unscheduled => "unscheduled",
            Standing::Scheduled => "scheduled",
            Standing::Due => "due",
            Standing::Late => "late",
            Standing::Sending => "sending",
            Standing::Incomplete => "incomplete",
            Standing::Complete => "complete",
        }
    }
}

/// What the journal says about an edition's real send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NotStarted,
    Incomplete,
    Complete,
}

/// The standing of an edition from its schedule, its progress and the lock.
pub fn standing(
    send_at: Option<DateTime<FixedOffset>>,
    progress: Progress,
    locked: bool,
    now: DateTime<Utc>,
    max_lateness: std::time::Duration,
) -> Standing {
    if locked {
        return Standing::Sending;
    }
    match (progress, send_at) {
        (Progress::Complete, _) => Standing::Complete,
        (Progress::Incomplete, _) => Standing::Incomplete,
        (Progress::NotStarted, None) => Standing::Unscheduled,
        (Progress::NotStarted, Some(at)) if at > now => Standing::Scheduled,
        (Progress::NotStarted, Some(at)) if lateness(at, now) > max_lateness => Standing::Late,
        (Progress::NotStarted, Some(_)) => Standing::Due,
    }
}

/// How long ago `send_at` was (zero if it is in the future).
pub fn lateness(send_at: DateTime<FixedOffset>, now: DateTime<Utc>) -> std::time::Duration {
    (now - send_at.with_timezone(&Utc))
        .to_std()
        .unwrap_or_default()
}

/// The journal's view of one edition's real send.
pub fn progress(store: Option<&Store>, slug: &str) -> Result<Progress> {
    let Some(store) = store else {
        return Ok(Progress::NotStarted);
    };
    Ok(match store.send_info(slug, REAL)? {
        None => Progress::NotStarted,
        Some(info) if info.finished_at.is_some() => Progress::Complete,
        Some(info) if info.frozen && store.counts(slug, REAL)?.complete() => Progress::Complete,
        Some(_) => Progress::Incomplete,
    })
}

/// One file in editions/, with its schedule. An edition that does not parse still
/// yields its `send_at` when the line can be read on its own, so a broken edition that
/// is due is reported rather than silently ignored.
pub struct Listed {
    pub slug: String,
    pub path: PathBuf,
    pub send_at: Option<DateTime<FixedOffset>>,
    pub edition: std::result::Result<Edition, crate::diag::Diagnostics>,
}

/// Every edition file, oldest `send_at` first (unscheduled ones last, by slug).
pub fn list(config: &crate::config::Config) -> std::io::Result<Vec<Listed>> {
    let mut out: Vec<Listed> = edition::all_paths(config)?
        .into_iter()
        .map(|path| {
            let edition = edition::load(&path);
            let send_at = match &edition {
                Ok(e) => e.send_at,
                Err(_) => loose_send_at(&path),
            };
            let slug = match &edition {
                Ok(e) => e.slug.clone(),
                Err(_) => path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            };
            Listed {
                slug,
                path,
                send_at,
                edition,
            }
        })
        .collect();
    out.sort_by(|a, b| match (a.send_at, b.send_at) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.slug.cmp(&b.slug)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.slug.cmp(&b.slug),
    });
    Ok(out)
}

/// The `send_at = …` line of a front matter, read on its own.
fn loose_send_at(path: &Path) -> Option<DateTime<FixedOffset>> {
    let text = std::fs::read_to_string(path).ok()?;
    let front = text.trim_start_matches('\u{feff}').strip_prefix("+++")?;
    let front = &front[..front.find("\n+++").unwrap_or(front.len())];
    front.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "send_at" {
            return None;
        }
        let value = value.split('#').next()?.trim().trim_matches('"');
        let value = value.replacen(' ', "T", 1);
        DateTime::parse_from_rfc3339(&value).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn standing_follows_schedule_progress_and_lock() {
        let now = at("2026-11-20T09:00:00Z").with_timezone(&Utc);
        let six_hours = Duration::from_secs(6 * 3600);
        let s =
            |send_at: Option<&str>, p, locked| standing(send_at.map(at), p, locked, now, six_hours);
        use Progress::*;
        assert_eq!(s(None, NotStarted, false), Standing::Unscheduled);
        assert_eq!(
            s(Some("2026-11-20T10:00:00+01:00"), NotStarted, false),
            Standing::Due
        );
        assert_eq!(
            s(Some("2026-11-20T10:00:01+01:00"), NotStarted, false),
            Standing::Scheduled
        );
        assert_eq!(
            s(Some("2026-11-20T03:00:00Z"), NotStarted, false),
            Standing::Due
        );
        assert_eq!(
            s(Some("2026-11-20T02:59:59Z"), NotStarted, false),
            Standing::Late
        );
        // Started: lateness no longer matters.
        assert_eq!(
            s(Some("2026-11-18T02:00:00Z"), Incomplete, false),
            Standing::Incomplete
        );
        assert_eq!(s(None, Complete, false), Standing::Complete);
        assert_eq!(
            s(Some("2026-11-18T02:00:00Z"), NotStarted, true),
            Standing::Sending
        );
    }

    #[test]
    fn send_at_is_read_from_a_broken_front_matter() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.md");
        std::fs::write(
            &p,
            "+++\ntitle = \nsend_at = 2026-11-20T07:00:00+01:00 # morning\n+++\nbody\n",
        )
        .unwrap();
        assert_eq!(loose_send_at(&p), Some(at("2026-11-20T07:00:00+01:00")));
        std::fs::write(
            &p,
            "+++\ntitle = \"x\"\n+++\nsend_at = 2026-11-20T07:00:00Z\n",
        )
        .unwrap();
        assert_eq!(loose_send_at(&p), None, "only the front matter counts");
    }
}
