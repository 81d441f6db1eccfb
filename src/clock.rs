//! The one clock. Everything that asks "what time is it" asks here, so tests can set
//! the time with `BRIEF_NOW` (RFC 3339) and scheduling is deterministic.

use chrono::{DateTime, FixedOffset, Utc};

/// Name of the environment variable that freezes the clock (tests only).
pub const NOW_ENV: &str = "BRIEF_NOW";

/// The current time: `BRIEF_NOW` if set, the system clock otherwise. The binary
/// calls [`check`] first, so a `BRIEF_NOW` that does not parse never gets here.
// The one place that reads the system clock (clippy.toml bans it elsewhere).
#[allow(clippy::disallowed_methods)]
pub fn now() -> DateTime<Utc> {
    match set_time().ok().flatten() {
        Some(t) => {
            warn_frozen_once(t);
            t
        }
        None => Utc::now(),
    }
}

/// Refuses a `BRIEF_NOW` that is not an RFC 3339 time: ignoring it would run on the
/// system clock while the operator believes the clock is set.
pub fn check() -> Result<(), String> {
    set_time().map(|_| ())
}

fn set_time() -> Result<Option<DateTime<Utc>>, String> {
    match std::env::var(NOW_ENV) {
        Ok(s) => DateTime::<FixedOffset>::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!(
                    "{NOW_ENV}=`{s}` is not an RFC 3339 time such as 2026-11-20T09:00:00Z ({e})"
                )
            }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{NOW_ENV} is not valid UTF-8")),
    }
}

/// A frozen clock left set in production would silently mis-schedule every edition,
/// so say so — once per process, not at every reading.
fn warn_frozen_once(t: DateTime<Utc>) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "{NOW_ENV} overrides the clock: it is {} (meant for tests)",
            t.to_rfc3339()
        );
    });
}

/// Parses durations as used in brief.toml: `90s`, `5m`, `1h`, `2d`, or combinations
/// such as `1h30m`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "`{text}`: unknown unit `{c}` (use s, m, h, d or w)"
                ))
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}`: expected a number before `{c}`"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}`: too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("`{text}`: a number needs a unit (s, m, h, d or w)"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Formats a duration the way brief.toml writes it (largest units first).
pub fn format_duration(d: std::time::Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("3h5").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}
