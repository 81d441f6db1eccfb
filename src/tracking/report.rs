//! `brief report sponsors`: per edition, what was delivered and what was clicked,
//! readers and machines apart; as text, JSON, CSV, or a self-contained HTML page a
//! sales team can forward (an inline SVG chart, no script, nothing loaded).

use super::filter;
use super::TrackedLink;
use crate::config::{Config, TrackedSection, Tracking};
use crate::serve::pages::escape;
use crate::store::{Click, Store, REAL};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

/// Hours the chart covers, from the start of the send.
pub const CHART_HOURS: usize = 48;
/// The `click_uniques` scope of "any sponsor link".
const SPONSOR_SCOPE: &str = "sponsor";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub editions: Vec<EditionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EditionReport {
    pub edition: String,
    /// When the real send started: the reporting window and the chart start here.
    pub sent_at: DateTime<Utc>,
    /// Accepted by the receiving servers, minus hard bounces after acceptance.
    pub delivered: u64,
    pub window_closes: DateTime<Utc>,
    /// The window is closed: these numbers no longer change.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The sponsor (the host of the sponsor link), when the edition has one tracked.
    pub sponsor: Option<String>,
    /// Readers who clicked any sponsor link, and the clicks on them.
    pub sponsor_clicks: Option<Counts>,
    pub links: Vec<LinkReport>,
    /// Clicks per hour since the send started (the sponsor's links, or every tracked
    /// link when there is no sponsor link).
    pub hourly: Vec<Hour>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub section: &'static str,
    pub url: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Clicks on one link (or a set of links).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Readers' clicks.
    pub human_clicks: u64,
    /// Readers who clicked (each counted once).
    pub unique_human_clicks: u64,
    /// Click-through: unique readers over delivered (0 when nothing was delivered).
    pub ctr: f64,
    pub machine_clicks: u64,
    pub machine: Machine,
}

/// Machine clicks by why they were told apart (docs/tracking.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub head: u64,
    pub prefetch: u64,
    pub scanner: u64,
    pub burst: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Hour {
    pub human: u64,
    pub machine: u64,
}

/// Which editions a report covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub edition: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// Builds the report; first closes every window that has ended (so what is dropped
/// after the window is dropped before anything is read).
pub fn build(
    config: &Config,
    store: &Store,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Report> {
    close_expired(store, &config.tracking, now)?;
    let editions = match &selection.edition {
        Some(e) => match store.click_window(e)? {
            Some(w) => vec![(e.clone(), w.started_at)],
            None => bail!("{e} has no real send in the journal: there is nothing to report yet"),
        },
        None => store.tracked_editions(selection.since)?,
    };
    let mut out = Vec::new();
    for (edition, sent_at) in editions {
        out.push(edition_report(config, store, &edition, sent_at)?);
    }
    Ok(Report {
        generated_at: now,
        editions: out,
    })
}

fn edition_report(
    config: &Config,
    store: &Store,
    edition: &str,
    sent_at: DateTime<Utc>,
) -> Result<EditionReport> {
    let tracking = &config.tracking;
    let links = store.links_of(edition)?;
    let clicks = store.clicks(edition)?;
    let delivered = store.delivered_count(edition, REAL)?;
    let is_final = store.click_window(edition)?.is_some_and(|w| w.closed);
    let bursts = filter::bursts(&clicks, tracking.burst_links, tracking.burst_within);
    let uniques = if is_final {
        store.click_uniques(edition)?
    } else {
        uniques(&links, &clicks, &bursts)
    };
    let unique_of = |scope: &str| {
        uniques
            .iter()
            .find(|(s, _)| s == scope)
            .map_or(0, |(_, n)| *n)
    };
    let mut ordered = links.clone();
    // Sponsor links first, then section by section, each in the edition's order.
    ordered.sort_by_key(|l| (section_rank(l.section), l.position));
    let link_reports: Vec<LinkReport> = ordered
        .iter()
        .map(|l| LinkReport {
            section: l.section.as_str(),
            url: l.url.clone(),
            counts: counts(
                clicks.iter().filter(|c| c.token == l.token),
                &bursts,
                unique_of(&l.token),
                delivered,
            ),
        })
        .collect();
    let sponsor_tokens: HashSet<&str> = links
        .iter()
        .filter(|l| l.section == TrackedSection::Sponsor)
        .map(|l| l.token.as_str())
        .collect();
    let sponsor = links
        .iter()
        .find(|l| l.section == TrackedSection::Sponsor)
        .map(|l| super::host_of(&l.url).to_string());
    let sponsor_clicks = sponsor.as_ref().map(|_| {
        counts(
            clicks
                .iter()
                .filter(|c| sponsor_tokens.contains(c.token.as_str())),
            &bursts,
            unique_of(SPONSOR_SCOPE),
            delivered,
        )
    });
    let mut hourly = vec![Hour::default(); CHART_HOURS];
    for c in &clicks {
        if !sponsor_tokens.is_empty() && !sponsor_tokens.contains(c.token.as_str()) {
            continue;
        }
        let hour = (c.at - sent_at).num_seconds().div_euclid(3600);
        if let Some(h) = usize::try_from(hour).ok().and_then(|h| hourly.get_mut(h)) {
            if c.machine.is_none() && !bursts.contains(&c.id) {
                h.human += 1;
            } else {
                h.machine += 1;
            }
        }
    }
    Ok(EditionReport {
        edition: edition.to_string(),
        sent_at,
        delivered,
        window_closes: sent_at
            + chrono::Duration::from_std(tracking.window).unwrap_or(chrono::Duration::MAX),
        is_final,
        sponsor,
        sponsor_clicks,
        links: link_reports,
        hourly,
    })
}

fn section_rank(s: TrackedSection) -> u8 {
    match s {
        TrackedSection::Sponsor => 0,
        TrackedSection::Essay => 1,
        TrackedSection::Roundup => 2,
        TrackedSection::Agenda => 3,
        TrackedSection::ReadMore => 4,
        TrackedSection::All => 5,
    }
}

fn counts<'a>(
    clicks: impl Iterator<Item = &'a Click>,
    bursts: &HashSet<i64>,
    unique: u64,
    delivered: u64,
) -> Counts {
    let mut c = Counts {
        unique_human_clicks: unique,
        ..Counts::default()
    };
    for click in clicks {
        let reason = match click.machine.as_deref() {
            None if bursts.contains(&click.id) => Some(filter::BURST),
            other => other,
        };
        match reason {
            None => c.human_clicks += 1,
            Some(filter::HEAD) => c.machine.head += 1,
            Some(filter::PREFETCH) => c.machine.prefetch += 1,
            Some(filter::BURST) => c.machine.burst += 1,
            Some(_) => c.machine.scanner += 1,
        }
    }
    c.machine_clicks = c.machine.head + c.machine.prefetch + c.machine.scanner + c.machine.burst;
    c.ctr = if delivered == 0 {
        0.0
    } else {
        unique as f64 / delivered as f64
    };
    c
}

/// Readers per link and per sponsor: distinct client labels among the readers' clicks.
fn uniques(links: &[TrackedLink], clicks: &[Click], bursts: &HashSet<i64>) -> Vec<(String, u64)> {
    let human = |c: &&Click| c.machine.is_none() && !bursts.contains(&c.id);
    let distinct = |pred: &dyn Fn(&Click) -> bool| -> u64 {
        clicks
            .iter()
            .filter(human)
            .filter(|c| pred(c))
            .filter_map(|c| c.client.as_deref())
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let sponsor: HashSet<&str> = links
        .iter()
        .filter(|l| l.section == TrackedSection::Sponsor)
        .map(|l| l.token.as_str())
        .collect();
    let mut out: Vec<(String, u64)> = links
        .iter()
        .map(|l| (l.token.clone(), distinct(&|c: &Click| c.token == l.token)))
        .collect();
    out.push((
        SPONSOR_SCOPE.to_string(),
        distinct(&|c: &Click| sponsor.contains(c.token.as_str())),
    ));
    out
}

/// Closes the window of every edition whose `window` has passed: bursts are marked,
/// unique counts kept, and the client labels and the key dropped.
pub fn close_expired(store: &Store, tracking: &Tracking, now: DateTime<Utc>) -> Result<usize> {
    let window = chrono::Duration::from_std(tracking.window).unwrap_or(chrono::Duration::MAX);
    let mut closed = 0;
    for (edition, started) in store.open_click_windows()? {
        if started + window > now {
            continue;
        }
        let links = store.links_of(&edition)?;
        let clicks = store.clicks(&edition)?;
        let bursts = filter::bursts(&clicks, tracking.burst_links, tracking.burst_within);
        let uniques = uniques(&links, &clicks, &bursts);
        let bursts: Vec<i64> = bursts.into_iter().collect();
        store.close_click_window(&edition, &bursts, &uniques, now)?;
        tracing::info!("{edition}: reporting window closed; client labels dropped");
        closed += 1;
    }
    Ok(closed)
}

fn percent(ctr: f64) -> String {
    format!("{:.2}%", ctr * 100.0)
}

/// The report for a terminal.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if report.editions.is_empty() {
        out.push_str("no edition with tracked links has been sent\n");
    }
    for e in &report.editions {
        let _ = writeln!(
            out,
            "{}  sent {}  delivered {}{}",
            e.edition,
            e.sent_at.format("%Y-%m-%d %H:%M UTC"),
            e.delivered,
            if e.is_final {
                "  (final)".to_string()
            } else {
                format!(
                    "  (counting until {})",
                    e.window_closes.format("%Y-%m-%d %H:%M UTC")
                )
            }
        );
        if let (Some(name), Some(c)) = (&e.sponsor, &e.sponsor_clicks) {
            let _ = writeln!(
                out,
                "  sponsor {name}: unique readers {}, click-through {}, clicks {}; machine clicks {} (apart)",
                c.unique_human_clicks,
                percent(c.ctr),
                c.human_clicks,
                c.machine_clicks
            );
        }
        for l in &e.links {
            let c = &l.counts;
            let _ = writeln!(
                out,
                "  {:<9} {}\n            unique {}  clicks {}  CTR {}  machine {} (head {}, prefetch {}, scanner {}, burst {})",
                l.section,
                l.url,
                c.unique_human_clicks,
                c.human_clicks,
                percent(c.ctr),
                c.machine_clicks,
                c.machine.head,
                c.machine.prefetch,
                c.machine.scanner,
                c.machine.burst
            );
        }
    }
    out
}

/// One row per edition and link.
pub fn csv(report: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "edition",
        "sent_at",
        "delivered",
        "final",
        "sponsor",
        "section",
        "url",
        "unique_human_clicks",
        "human_clicks",
        "ctr",
        "machine_clicks",
        "head",
        "prefetch",
        "scanner",
        "burst",
    ])?;
    for e in &report.editions {
        for l in &e.links {
            let c = &l.counts;
            w.write_record([
                e.edition.clone(),
                e.sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.delivered.to_string(),
                e.is_final.to_string(),
                e.sponsor.clone().unwrap_or_default(),
                l.section.to_string(),
                l.url.clone(),
                c.unique_human_clicks.to_string(),
                c.human_clicks.to_string(),
                format!("{:.6}", c.ctr),
                c.machine_clicks.to_string(),
                c.machine.head.to_string(),
                c.machine.prefetch.to_string(),
                c.machine.scanner.to_string(),
                c.machine.burst.to_string(),
            ])?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// A self-contained page: inline CSS and SVG, no script, nothing fetched.
pub fn html(report: &Report, newsletter: &str) -> String {
    let mut out = String::new();
    let title = format!("{} — sponsor report", newsletter);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>\
body{{font-family:Helvetica,Arial,sans-serif;color:#222;max-width:52rem;margin:2rem auto;padding:0 1rem}}\
h1{{font-size:1.5rem}}h2{{font-size:1.2rem;margin-top:2.5rem}}\
table{{border-collapse:collapse;width:100%;font-size:.9rem}}th,td{{text-align:right;padding:.3rem .5rem;border-bottom:1px solid #ddd}}\
th:first-child,td:first-child{{text-align:left;word-break:break-all}}.figures{{display:flex;gap:2rem;flex-wrap:wrap}}\
.figure b{{display:block;font-size:1.6rem}}.note{{color:#666;font-size:.85rem}}\
</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(&title)
    );
    if report.editions.is_empty() {
        out.push_str("<p>No edition with tracked links has been sent.</p>\n");
    }
    for e in &report.editions {
        let _ = writeln!(
            out,
            "<section class=\"edition\"><h2>{}{}</h2>",
            escape(&e.edition),
            e.sponsor
                .as_ref()
                .map(|s| format!(" — presented by {}", escape(s)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "<p class=\"note\">Sent {}. {}</p>",
            e.sent_at.format("%A %-d %B %Y, %H:%M UTC"),
            if e.is_final {
                "Final numbers.".to_string()
            } else {
                format!(
                    "Clicks are counted until {}.",
                    e.window_closes.format("%-d %B %Y")
                )
            }
        );
        out.push_str("<div class=\"figures\">");
        let _ = write!(
            out,
            "<div class=\"figure\"><b>{}</b>delivered</div>",
            e.delivered
        );
        if let Some(c) = &e.sponsor_clicks {
            let _ = write!(
                out,
                "<div class=\"figure\"><b>{}</b>readers clicked</div><div class=\"figure\"><b>{}</b>click-through</div><div class=\"figure\"><b>{}</b>clicks</div>",
                c.unique_human_clicks,
                percent(c.ctr),
                c.human_clicks
            );
        }
        out.push_str("</div>\n");
        out.push_str(&chart(&e.hourly, e.sponsor.is_some()));
        out.push_str(
            "<table><thead><tr><th>Link</th><th>Readers</th><th>Clicks</th><th>Click-through</th><th>Machine clicks</th></tr></thead><tbody>\n",
        );
        for l in &e.links {
            let c = &l.counts;
            let _ = writeln!(
                out,
                "<tr><td>{} <span class=\"note\">({})</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&l.url),
                escape(l.section),
                c.unique_human_clicks,
                c.human_clicks,
                percent(c.ctr),
                c.machine_clicks
            );
        }
        out.push_str("</tbody></table></section>\n");
    }
    out.push_str(
        "<p class=\"note\">Delivered: accepted by the readers' mail servers, minus messages that bounced afterwards. \
Readers and clicks leave out machine clicks: link scanners of mail security gateways, prefetches, HEAD requests, \
and one client fetching several links within seconds. No reader is identified: links are the same for everyone.</p>\n\
</body></html>\n",
    );
    out
}

/// Bars per hour: readers dark, machines light, stacked.
fn chart(hours: &[Hour], sponsor: bool) -> String {
    const W: usize = 720;
    const H: usize = 180;
    const PAD: usize = 24;
    let max = hours
        .iter()
        .map(|h| h.human + h.machine)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = (W - PAD) / hours.len().max(1);
    let scale = |n: u64| (n as usize * (H - PAD)) / max as usize;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"Clicks per hour over the first 48 hours\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#999\"/>",
        y = H - PAD
    );
    for (i, h) in hours.iter().enumerate() {
        let x = PAD + i * bar;
        let human = scale(h.human);
        let machine = scale(h.machine);
        let base = H - PAD;
        if human > 0 {
            let _ = write!(
                svg,
                "<rect class=\"human\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{human}\" fill=\"#1f4e79\"><title>hour {}: {} reader clicks</title></rect>",
                base - human,
                bar - 2,
                i + 1,
                h.human
            );
        }
        if machine > 0 {
            let _ = write!(
                svg,
                "<rect class=\"machine\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{machine}\" fill=\"#c9d6e3\"><title>hour {}: {} machine clicks</title></rect>",
                base - human - machine,
                bar - 2,
                i + 1,
                h.machine
            );
        }
        if i % 12 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#666\">{i}h</text>",
                H - 8
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{PAD}\" y=\"12\" font-size=\"11\" fill=\"#666\">max {max} per hour</text></svg>"
    );
    let _ = writeln!(
        svg,
        "<figcaption class=\"note\">Clicks per hour on {} over the first 48 hours: readers (dark), machines (light).</figcaption></figure>",
        if sponsor { "the sponsor's links" } else { "the tracked links" }
    );
    svg
}
