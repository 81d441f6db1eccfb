//! Sponsor reports (`[tracking]`): links rewritten once per edition (the same in the
//! text and HTML parts, no reader in them), `brief serve`'s `/c/<token>` redirect over a
//! real socket (forged and hostile tokens are 404s, never redirects), machine clicks
//! (HEAD, prefetch, scanner agents, bursts right after the send) counted apart, and
//! `brief report sponsors` against a real send to smtp-sink with scripted clicks:
//! exact numbers, the window closing, CSV, and the HTML page rendered in Chromium.

use crate::harness::*;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;

const EDITION: &str = r#"+++
title = "Night trains are back"
date = 2026-11-20

[sponsor]
text = "The **Acme Rail Pass** now covers sleepers. See the [prices](https://acme.example/pricing)."
url = "https://acme.example/offer"
cta = "Get the pass"
+++

Night trains are back on the map: [the full story](https://example.com/story).
"#;

const TRACKING: &str = r#"
[tracking]
enabled = true
sections = ["sponsor", "essay"]
utm_source = "test-brief"

[hooks]
postmark_user = "brief"
postmark_password_env = "BRIEF_OLD_SECRET"
"#;

const BROWSER: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15";

/// A newsletter of six readers with the sponsor edition and `[tracking]` on.
fn tracked(smtp_port: Option<u16>, tracking: &str) -> Newsletter {
    let nl = Newsletter::generated(6, smtp_port);
    nl.write("editions/e1.md", EDITION);
    let config = nl.read("brief.toml");
    nl.write("brief.toml", &format!("{config}{tracking}"));
    nl
}

/// The tracked links (`…/c/<token>`) in a text, in order of first appearance.
fn click_links(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("https://news.example.org/brief/c/") {
        let link: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/:._-".contains(*c))
            .collect();
        if !out.contains(&link) {
            out.push(link);
        }
    }
    out
}

/// The decoded text and HTML parts of a raw message, as Python's email package reads them.
fn parts(raw: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(&file, raw).unwrap();
    let out = Command::new("python3")
        .arg(support("mail_parts.py"))
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let part = |kind: &str| {
        v[kind]
            .as_str()
            .unwrap_or_else(|| panic!("no {kind} part in {v}: {raw}"))
            .to_string()
    };
    (part("text"), part("html"))
}

fn path_of(link: &str) -> String {
    link.trim_start_matches("https://news.example.org")
        .to_string()
}

/// One click: GET (or HEAD) from `ip` (forwarded by the loopback proxy) as `agent`.
fn click(
    server: &Server,
    method: &str,
    path: &str,
    ip: &str,
    agent: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("X-Forwarded-For", ip), ("User-Agent", agent)];
    headers.extend_from_slice(extra);
    server.request(method, path, &headers, b"")
}

fn report_json(nl: &Newsletter, now: &str) -> Value {
    let out = nl.run_at(now, &["report", "sponsors", "--json"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The report's entry for the link whose URL starts with `url`.
fn link<'a>(edition: &'a Value, url: &str) -> &'a Value {
    edition["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["url"].as_str().unwrap().starts_with(url))
        .unwrap_or_else(|| panic!("no link {url} in {edition}"))
}

fn sqlite(nl: &Newsletter, query: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchall())",
        ])
        .arg(nl.path("state/brief.db"))
        .arg(query)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sponsor_report_counts_readers_and_machines_apart_after_a_real_send() {
    let sink = Server::smtp_sink(&[]);
    let nl = tracked(Some(sink.port), TRACKING);

    // `brief check` shows the size with the tracked links.
    let check = nl.run(&["check"]);
    assert_eq!(code(&check), Some(0), "{}", stdout(&check));
    let line = stdout(&check)
        .lines()
        .find(|l| l.starts_with("e1: HTML"))
        .unwrap_or_else(|| panic!("no size line: {}", stdout(&check)))
        .to_string();
    assert!(line.contains("with tracking (3 links tracked"), "{line}");

    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let messages = sink.messages();
    assert_eq!(messages.len(), 6);

    // Every reader got the same three tracked links, in the text part as in the HTML.
    let mut seen: Option<Vec<String>> = None;
    for (rcpt, raw) in &messages {
        let (text, html) = parts(raw);
        let in_text = click_links(&text);
        let in_html: BTreeSet<String> = click_links(&html).into_iter().collect();
        assert_eq!(in_text.len(), 3, "{rcpt}: {text}");
        assert_eq!(
            in_text.iter().cloned().collect::<BTreeSet<_>>(),
            in_html,
            "{rcpt}"
        );
        assert!(
            !html.contains("https://acme.example"),
            "an untracked sponsor link: {html}"
        );
        let local = rcpt.split('@').next().unwrap();
        assert!(in_text.iter().all(|l| !l.contains(local)));
        match &seen {
            None => seen = Some(in_text),
            Some(first) => assert_eq!(first, &in_text, "links differ between readers"),
        }
    }
    let links = seen.unwrap();

    // Scanner phase: five seconds after the send.
    let scan = nl.serve_at("2026-11-20T09:00:05Z");
    let mut dest = std::collections::BTreeMap::new();
    for l in &links {
        // A gateway with a browser's user agent fetches every link at once: a burst.
        let res = click(&scan, "GET", &path_of(l), "198.51.100.7", BROWSER, &[]);
        assert_eq!(res.status, 302, "{res:?}");
        assert_eq!(res.header("cache-control"), Some("no-store"));
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
        assert!(res.body.is_empty(), "a redirect has no page: {}", res.body);
        dest.insert(res.header("location").unwrap().to_string(), path_of(l));
    }
    let offer = dest
        .iter()
        .find(|(u, _)| u.starts_with("https://acme.example/offer"))
        .map(|(u, p)| (u.clone(), p.clone()))
        .unwrap();
    assert_eq!(
        offer.0,
        "https://acme.example/offer?utm_source=test-brief&utm_medium=email&utm_campaign=e1"
    );
    assert!(
        dest.contains_key(
            "https://acme.example/pricing?utm_source=test-brief&utm_medium=email&utm_campaign=e1"
        ),
        "{dest:?}"
    );
    assert!(
        dest.contains_key("https://example.com/story"),
        "UTM only on sponsor links: {dest:?}"
    );
    let pricing = dest
        .iter()
        .find(|(u, _)| u.starts_with("https://acme.example/pricing"))
        .unwrap()
        .1
        .clone();
    let story = dest["https://example.com/story"].clone();

    // HEAD, a prefetch and a named scanner: redirected, counted apart.
    let head = click(&scan, "HEAD", &offer.1, "198.51.100.8", BROWSER, &[]);
    assert_eq!(
        (head.status, head.header("location")),
        (302, Some(offer.0.as_str()))
    );
    let prefetch = click(
        &scan,
        "GET",
        &offer.1,
        "198.51.100.9",
        BROWSER,
        &[("Sec-Purpose", "prefetch")],
    );
    assert_eq!(prefetch.status, 302);
    let gateway = click(
        &scan,
        "GET",
        &offer.1,
        "198.51.100.10",
        "Mozilla/5.0 (compatible; Barracuda Sentinel)",
        &[],
    );
    assert_eq!(gateway.status, 302);

    // Forged and hostile tokens: a 404 page, never a redirect.
    let real = offer.1.rsplit('/').next().unwrap().to_string();
    let mut altered = real.clone().into_bytes();
    altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for hostile in [
        format!("/brief/c/{altered}"),
        "/brief/c/AAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "/brief/c/https:%2F%2Fevil.example%2F".to_string(),
        "/brief/c/%2F%2Fevil.example".to_string(),
        format!("/brief/c/{real}/..%2F..%2Fevil"),
        format!("/brief/c/{real}?url=https://evil.example/"),
        "/brief/c/".to_string(),
        "/c/..%2f..%2fetc%2fpasswd".to_string(),
    ] {
        let res = click(&scan, "GET", &hostile, "198.51.100.11", BROWSER, &[]);
        if hostile.contains('?') {
            // A query on a real token changes nothing: the recorded URL, not the query.
            // (It counts as a reader's click from 198.51.100.11: see the report below.)
            assert_eq!(res.header("location"), Some(offer.0.as_str()), "{hostile}");
            continue;
        }
        assert_eq!(res.status, 404, "{hostile}: {res:?}");
        assert_eq!(res.header("location"), None, "{hostile}");
    }
    // Only GET and HEAD follow a link.
    let post = scan.request("POST", &offer.1, &[], b"");
    assert_eq!(post.status, 405);
    drop(scan);

    // Readers, an hour and a half after the send; one of them clicks twice.
    let readers = nl.serve_at("2026-11-20T10:30:00Z");
    for (ip, path) in [
        ("203.0.113.1", &offer.1),
        ("203.0.113.1", &offer.1),
        ("203.0.113.2", &offer.1),
        ("203.0.113.2", &pricing),
        ("203.0.113.3", &story),
    ] {
        assert_eq!(click(&readers, "GET", path, ip, BROWSER, &[]).status, 302);
    }
    drop(readers);

    // The next morning: one more reader, and a hard bounce reported for a delivered
    // message (Postmark's webhook), so "delivered" is 5 of 6.
    let morning = nl.serve_at("2026-11-21T08:15:00Z");
    assert_eq!(
        click(&morning, "GET", &offer.1, "203.0.113.4", BROWSER, &[]).status,
        302
    );
    let auth = format!("Basic {}", STANDARD.encode(format!("brief:{OLD_SECRET}")));
    let bounce = json!({
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 77, "Type": "HardBounce",
        "TypeCode": 1, "Name": "Hard bounce", "Tag": "", "MessageID": "x", "Metadata": {},
        "ServerID": 1, "Description": "unknown user", "Details": "smtp;550 5.1.1 no such user",
        "Email": "reader0003@example.org", "From": "brief@news.example.org",
        "BouncedAt": "2026-11-21T08:14:00Z", "DumpAvailable": false, "Inactive": true,
        "CanActivate": true, "Subject": "Night trains are back", "Content": ""
    });
    let res = morning.request(
        "POST",
        "/brief/hooks/postmark",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &serde_json::to_vec(&bounce).unwrap(),
    );
    assert_eq!(res.status, 200, "{res:?}");
    drop(morning);

    let report = report_json(&nl, "2026-11-21T09:00:00Z");
    let e = &report["editions"][0];
    assert_eq!(report["editions"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(e["edition"], "e1");
    assert_eq!(e["delivered"], 5, "{e}");
    assert_eq!(e["final"], false);
    assert_eq!(e["sponsor"], "acme.example");
    // The offer: readers 1 (twice), 2, 4 and the reader-looking query click of the
    // hostile phase (198.51.100.11); machines: the burst, HEAD, prefetch, scanner.
    let o = link(e, "https://acme.example/offer");
    assert_eq!(o["section"], "sponsor");
    assert_eq!(
        (
            o["human_clicks"].as_u64(),
            o["unique_human_clicks"].as_u64()
        ),
        (Some(5), Some(4)),
        "{o}"
    );
    assert_eq!(o["ctr"].as_f64(), Some(0.8));
    assert_eq!(o["machine_clicks"], 4);
    assert_eq!(
        o["machine"],
        json!({"head": 1, "prefetch": 1, "scanner": 1, "burst": 1})
    );
    let p = link(e, "https://acme.example/pricing");
    assert_eq!(
        (
            p["human_clicks"].as_u64(),
            p["unique_human_clicks"].as_u64(),
            p["machine_clicks"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{p}"
    );
    let s = link(e, "https://example.com/story");
    assert_eq!(s["section"], "essay");
    assert_eq!(
        (
            s["human_clicks"].as_u64(),
            s["unique_human_clicks"].as_u64(),
            s["machine"]["burst"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    // The sponsor as a whole: readers 1, 2, 4 and the query click, each once.
    let sp = &e["sponsor_clicks"];
    assert_eq!(
        (
            sp["unique_human_clicks"].as_u64(),
            sp["human_clicks"].as_u64(),
            sp["machine_clicks"].as_u64()
        ),
        (Some(4), Some(6), Some(5)),
        "{sp}"
    );
    // The chart: the sponsor's machines in hour 0, readers in hours 1 and 23.
    let hourly = e["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 48);
    assert_eq!(hourly[0], json!({"human": 1, "machine": 5}));
    assert_eq!(hourly[1], json!({"human": 4, "machine": 0}));
    assert_eq!(hourly[23], json!({"human": 1, "machine": 0}));

    // CSV: one row per link.
    let csv = nl.run_at("2026-11-21T09:00:00Z", &["report", "sponsors", "--csv"]);
    let csv = stdout(&csv);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .starts_with("edition,sent_at,delivered,final,sponsor,section,url,unique_human_clicks"));
    assert!(csv.contains(",acme.example,sponsor,https://acme.example/offer?utm_source=test-brief&utm_medium=email&utm_campaign=e1,4,5,0.800000,4,1,1,1,1"), "{csv}");

    // The window closes after 30 days: the same numbers, final, and the client labels
    // and the edition's key are gone. A click after it still redirects, uncounted.
    let later = "2026-12-20T09:00:01Z";
    let closed = report_json(&nl, later);
    let c = &closed["editions"][0];
    assert_eq!(c["final"], true);
    assert_eq!(link(c, "https://acme.example/offer"), o);
    assert_eq!(c["sponsor_clicks"], e["sponsor_clicks"]);
    assert_eq!(c["hourly"], e["hourly"]);
    assert_eq!(
        sqlite(&nl, "SELECT count(*) FROM clicks WHERE client IS NOT NULL"),
        "[(0,)]"
    );
    assert_eq!(
        sqlite(&nl, "SELECT client_key FROM click_windows"),
        "[(None,)]"
    );
    let after = nl.serve_at("2026-12-21T09:00:00Z");
    assert_eq!(
        click(&after, "GET", &offer.1, "203.0.113.5", BROWSER, &[]).status,
        302
    );
    drop(after);
    let again = report_json(&nl, "2026-12-22T09:00:00Z");
    assert_eq!(link(&again["editions"][0], "https://acme.example/offer"), o);

    // The HTML page, as a sales team would open it: Chromium renders the chart.
    let html = nl.run_at("2026-12-22T09:00:00Z", &["report", "sponsors", "--html"]);
    assert_eq!(code(&html), Some(0));
    let page = stdout(&html);
    for external in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(
            !page.contains(external),
            "not self-contained ({external}): {page}"
        );
    }
    let dom = chromium_dom(&page);
    assert!(dom.contains("<svg"), "{dom}");
    assert_eq!(
        dom.matches("class=\"human\"").count(),
        3,
        "bars for hours 0, 1 and 23: {dom}"
    );
    assert!(dom.contains("class=\"machine\""), "{dom}");
    assert!(dom.contains("presented by acme.example"), "{dom}");
    assert!(dom.contains("80.00%"), "{dom}");
}

/// The DOM Chromium builds from `page` (headless, no network).
fn chromium_dom(page: &str) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is needed for this test (Debian package `chromium`; scripts/test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    std::fs::write(&file, page).unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "chromium rendered nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

const FULL_EDITION: &str = r#"+++
title = "Night trains are back"
date = 2026-11-20

[sponsor]
text = "The **Acme Rail Pass** now covers sleepers."
url = "https://acme.example/offer"

[roundup]
[[roundup.items]]
headline = "Ports agree on shore power."
text = "Six ports, [one connector](https://ports.example/standard)."
url = "https://ports.example/news"

[agenda]
[[agenda.items]]
when = "09:30"
text = "Ministers meet; [the agenda](https://council.example/agenda)."

[[read_more]]
title = "Sleeper carriages"
url = "https://example.com/sleepers"
+++

Night trains are back: [the full story](https://example.com/story). Write to
[the desk](mailto:desk@example.org).
"#;

/// `brief build` of e1 in `nl`: (text part, HTML).
fn build(nl: &Newsletter) -> (String, String) {
    let out = nl.run(&["build", "--edition", "e1", "--out", "out"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (nl.read("out/email.txt"), nl.read("out/email.html"))
}

#[test]
fn tracking_is_off_by_default_utm_alone_and_all_sections_when_asked() {
    let nl = tracked(None, "");
    nl.write("editions/e1.md", FULL_EDITION);
    let plain_config = nl.read("brief.toml");

    // Off by default: every link as written, no size line.
    let (text, html) = build(&nl);
    assert!(click_links(&text).is_empty() && click_links(&html).is_empty());
    assert!(text.contains("https://acme.example/offer\n"), "{text}");
    assert!(!stdout(&nl.run(&["check"])).contains("with tracking"));

    // UTM parameters alone: the sponsor's link goes straight to the sponsor, tagged.
    nl.write(
        "brief.toml",
        &format!("{plain_config}\n[tracking]\nutm_source = \"brief\"\n"),
    );
    let (text, html) = build(&nl);
    assert!(click_links(&text).is_empty());
    assert!(
        text.contains(
            "https://acme.example/offer?utm_source=brief&utm_medium=email&utm_campaign=e1"
        ),
        "{text}"
    );
    assert!(html.contains(
        "https://acme.example/offer?utm_source=brief&amp;utm_medium=email&amp;utm_campaign=e1"
    ));
    assert!(text.contains("https://ports.example/news") && !text.contains("ports.example/news?"));

    // Every section: all http(s) links tracked, the same set in both parts; mailto,
    // the unsubscribe and the web version untouched.
    nl.write(
        "brief.toml",
        &format!("{plain_config}\n[tracking]\nenabled = true\nsections = [\"all\"]\n"),
    );
    let (text, html) = build(&nl);
    let in_text: BTreeSet<String> = click_links(&text).into_iter().collect();
    let in_html: BTreeSet<String> = click_links(&html).into_iter().collect();
    assert_eq!(
        in_text.len(),
        6,
        "sponsor, essay, 2 roundup, agenda, read_more: {text}"
    );
    assert_eq!(in_text, in_html);
    for untouched in [
        "mailto:desk@example.org",
        "https://news.example.org/brief/e1/",
        "https://news.example.org/brief/u/",
    ] {
        assert!(
            text.contains(untouched) && html.contains(untouched),
            "{untouched}"
        );
    }
    for original in [
        "acme.example",
        "ports.example",
        "council.example",
        "example.com/",
    ] {
        assert!(
            !html.contains(&format!("href=\"https://{original}")),
            "{original} not tracked"
        );
    }
    let check = stdout(&nl.run(&["check", "--edition", "e1"]));
    assert!(
        check.contains("e1: HTML") && check.contains("(6 links tracked"),
        "{check}"
    );

    // A test send's links redirect, but its clicks are not counted: the window opens
    // with the real send.
    assert_eq!(
        code(&nl.run(&["send", "--edition", "e1", "--test"])),
        Some(0)
    );
    let link = in_text
        .iter()
        .next()
        .unwrap()
        .trim_start_matches("https://news.example.org")
        .to_string();
    let serve = nl.serve();
    let res = click(&serve, "GET", &link, "203.0.113.9", BROWSER, &[]);
    assert_eq!(res.status, 302);
    drop(serve);
    let early = nl.run(&["report", "sponsors", "--edition", "e1"]);
    assert_eq!(code(&early), Some(1));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("e1 has no real send"),
        "{early:?}"
    );
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let report = report_json(&nl, NOW);
    let e = &report["editions"][0];
    assert_eq!(e["delivered"], 6);
    assert_eq!(e["links"].as_array().unwrap().len(), 6);
    assert!(
        e["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["human_clicks"] == 0 && l["machine_clicks"] == 0),
        "{e}"
    );
    let sections: Vec<&str> = e["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["section"].as_str().unwrap())
        .collect();
    assert_eq!(
        sections,
        [
            "sponsor",
            "essay",
            "roundup",
            "roundup",
            "agenda",
            "read_more"
        ],
        "sponsor links first, then section by section"
    );
    for (since, editions) in [
        ("2026-11-20", 1),
        ("2026-11-20T09:00:01Z", 0),
        ("2026-11-21", 0),
    ] {
        let out = nl.run(&["report", "sponsors", "--since", since, "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["editions"].as_array().unwrap().len(),
            editions,
            "--since {since}"
        );
    }
    assert_eq!(
        code(&nl.run(&["report", "sponsors", "--since", "last week"])),
        Some(2)
    );
    let text_report = stdout(&nl.run(&["report", "sponsors"]));
    assert!(
        text_report.contains("e1  sent 2026-11-20 09:00 UTC  delivered 6"),
        "{text_report}"
    );
    assert!(
        text_report.contains("sponsor acme.example: unique readers 0, click-through 0.00%, clicks 0; machine clicks 0"),
        "{text_report}"
    );
}

/// Everything the click tables answer for one scenario, as text: run on both engines,
/// the two must be equal.
fn click_area(s: &brief::store::Store) -> Vec<String> {
    use brief::config::TrackedSection;
    use brief::store::{NewRecipient, REAL};
    use brief::tracking::TrackedLink;
    let t = |secs: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
            + chrono::Duration::seconds(secs)
    };
    let mut out = Vec::new();
    let link = |token: &str, position, section, url: &str| TrackedLink {
        token: token.into(),
        position,
        section,
        url: url.into(),
    };
    let links = [
        link("tokA", 0, TrackedSection::Sponsor, "https://acme.example/a"),
        link("tokB", 1, TrackedSection::Essay, "https://example.com/b"),
    ];
    s.record_links("e1", &links, t(0)).unwrap();
    s.record_links(
        "e1",
        &[link(
            "tokA",
            0,
            TrackedSection::Sponsor,
            "https://evil.example/",
        )],
        t(1),
    )
    .unwrap();
    out.push(format!(
        "{:?} {:?}",
        s.tracked_link("tokA").unwrap(),
        s.tracked_link("nope").unwrap()
    ));
    out.push(format!("{:?}", s.links_of("e1").unwrap()));
    out.push(format!(
        "before send {:?} {:?}",
        s.click_window("e1").unwrap(),
        s.tracked_editions(None).unwrap()
    ));
    let people = ["a@x.org", "b@x.org"].map(|a| NewRecipient {
        address: a.into(),
        name: String::new(),
        fields: "{}".into(),
    });
    s.freeze("e1", REAL, t(0), &mut people.into_iter(), &mut || 0)
        .unwrap();
    out.push(format!(
        "window {:?} {:?}",
        s.click_window("e1").unwrap(),
        s.tracked_editions(Some(t(1))).unwrap()
    ));
    let key = s.click_key("e1").unwrap().unwrap();
    out.push(format!(
        "key {} {}",
        key.len(),
        s.click_key("e1").unwrap() == Some(key.clone())
    ));
    s.record_click("tokA", "e1", t(5), None, "c1").unwrap();
    s.record_click("tokB", "e1", t(6), Some("head"), "c2")
        .unwrap();
    let clicks = s.clicks("e1").unwrap();
    out.push(format!("{clicks:?} {:?}", s.open_click_windows().unwrap()));
    s.close_click_window(
        "e1",
        &[clicks[0].id],
        &[("tokA".into(), 1), ("sponsor".into(), 1)],
        t(99),
    )
    .unwrap();
    out.push(format!(
        "closed {:?} {:?} {:?} {:?} {:?}",
        s.clicks("e1").unwrap(),
        s.click_key("e1").unwrap(),
        s.click_window("e1").unwrap(),
        s.open_click_windows().unwrap(),
        {
            let mut u = s.click_uniques("e1").unwrap();
            u.sort();
            u
        }
    ));
    out.push(format!(
        "delivered {}",
        s.delivered_count("e1", REAL).unwrap()
    ));
    out
}

#[test]
fn the_click_tables_answer_on_postgresql_as_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = click_area(&brief::store::Store::open(&dir.path().join("brief.db")).unwrap());
    let pg = click_area(
        &brief::store::Store::connect(&brief::store::Location::Postgres {
            url: postgres().database(),
            password: None,
        })
        .unwrap(),
    );
    assert_eq!(sqlite, pg, "SQLite and PostgreSQL differ");
    assert!(sqlite.iter().any(|l| l.contains("closed")) && sqlite.len() == 8);
}

#[test]
fn clicks_are_counted_and_reported_on_postgresql() {
    let url = postgres().database();
    let nl = tracked(None, TRACKING);
    let mut config = nl.read("brief.toml");
    config.push_str(&format!("\n[state]\nurl = \"{url}\"\n"));
    nl.write("brief.toml", &config);
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let eml = std::fs::read_dir(nl.path("outbox/e1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (text, _) = parts(&std::fs::read_to_string(eml).unwrap());
    let links = click_links(&text);
    assert_eq!(links.len(), 3);
    let serve = nl.serve_at("2026-11-20T11:00:00Z");
    for l in &links {
        assert_eq!(
            click(&serve, "GET", &path_of(l), "203.0.113.1", BROWSER, &[]).status,
            302
        );
    }
    assert_eq!(
        click(
            &serve,
            "GET",
            &path_of(&links[0]),
            "203.0.113.2",
            BROWSER,
            &[]
        )
        .status,
        302
    );
    assert_eq!(serve.get("/brief/c/AAAAAAAAAAAAAAAAAAAAAA").status, 404);
    drop(serve);
    let report = report_json(&nl, "2026-11-21T09:00:00Z");
    let e = &report["editions"][0];
    assert_eq!(e["delivered"], 6);
    // One client fetched all three links at once: a burst; the other is a reader.
    let total = |key: &str| {
        e["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[key].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (
            total("human_clicks"),
            total("unique_human_clicks"),
            total("machine_clicks")
        ),
        (1, 1, 3),
        "{e}"
    );
    assert_eq!(postgres().sql(&url, "SELECT count(*) FROM clicks"), "4");
}
