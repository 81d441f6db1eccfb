//! `brief archive`, run as the real binary on a copy of the sample newsletter.

use crate::harness::{files, Newsletter};
use std::path::Path;

/// Between the two sample editions' send times.
const BETWEEN: &str = "2026-11-25T00:00:00Z";
/// After both.
const LATER: &str = "2027-01-01T00:00:00Z";

const BASE_URL: &str = "https://news.example.org/brief";

fn archive(n: &Newsletter, now: &str, args: &[&str]) -> String {
    let mut all = vec!["archive"];
    all.extend_from_slice(args);
    let out = n.run_at(now, &all);
    assert!(
        out.status.success(),
        "brief archive failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An edition older than both samples whose file name sorts after them, and whose
/// title needs escaping everywhere.
const OLD_EDITION: &str = r#"+++
title = "Tom & Jerry <live> \"quoted\" and 'single'"
kicker = "Odds & ends"
date = 2026-01-09
send_at = 2026-01-09T08:00:00+01:00
preheader = "A < B & C > D"

[[read_more]]
title = "Elsewhere"
url = "https://example.org/elsewhere?a=1&b=2"
+++

A short one. Say hello to {{ subscriber.name }} — that is edition text, not a template.
"#;

#[test]
fn no_subscriber_data_reaches_any_archive_file() {
    let n = Newsletter::sample();
    let people = [
        (
            "sentinel.reader.q7x@example.net",
            "Zebulon Sentinelreader",
            "Quuxtown",
        ),
        (
            "Sentinel.Second.k2@example.net",
            "Ottilie Sentinelsecond",
            "Frobcity",
        ),
        (
            "sentinel.editor.w9@example.net",
            "Wilhelmina Sentineleditor",
            "Grault",
        ),
    ];
    n.write(
        "subscribers/readers.csv",
        &format!(
            "email,name,city\n{},{},{}\n{},{},{}\n",
            people[0].0, people[0].1, people[0].2, people[1].0, people[1].1, people[1].2
        ),
    );
    n.write(
        "subscribers/editors.csv",
        &format!(
            "email,name,city\n{},{},{}\n",
            people[2].0, people[2].1, people[2].2
        ),
    );
    n.write("editions/2026-01-09-odds.md", OLD_EDITION);
    archive(&n, LATER, &["--all"]);

    let site = n.path("site");
    let mut forbidden: Vec<String> = Vec::new();
    for (email, name, city) in people {
        forbidden.extend([
            email.to_lowercase(),
            name.to_lowercase(),
            city.to_lowercase(),
        ]);
        for slug in ["2026-11-20", "2026-12-04", "2026-01-09-odds"] {
            for test in [false, true] {
                forbidden.push(n.token(email, slug, test).to_lowercase());
            }
        }
    }
    forbidden.push("/u/".into());
    forbidden.push("unsubscribe".into());
    let all = files(&site);
    assert!(all.len() >= 5, "{all:?}");
    for (rel, path) in &all {
        let text = std::fs::read_to_string(path).expect("utf-8").to_lowercase();
        for f in &forbidden {
            assert!(!text.contains(f.as_str()), "{rel} contains {f:?}");
        }
        // Markers must never reach a page.
        assert!(!brief::personalize::has_marker_chars(&text), "{rel}");
        assert!(!text.contains("<script"), "{rel} has a script");
    }
    // The subscribe note stands where the personal footer was.
    let page = std::fs::read_to_string(site.join("2026-11-20/index.html")).unwrap();
    assert!(page.contains("web edition of The Harbour Brief"));
    assert!(page.contains("mailto:editors@news.example.org?subject=Subscribe"));
}

#[test]
fn index_lists_due_editions_newest_first() {
    let n = Newsletter::sample();
    n.write("editions/2026-01-09-odds.md", OLD_EDITION);

    let stdout = archive(&n, BETWEEN, &[]);
    assert!(stdout.contains("archived 2 editions"), "{stdout}");
    assert!(stdout.contains("2026-12-04"), "{stdout}");
    let index = n.read("site/index.html");
    assert_eq!(
        links_in_order(&index),
        ["2026-11-20/", "2026-01-09-odds/"],
        "only editions whose send_at has passed, newest first"
    );
    assert!(!n.path("site/2026-12-04").exists());

    archive(&n, LATER, &[]);
    let index = n.read("site/index.html");
    assert_eq!(
        links_in_order(&index),
        ["2026-12-04/", "2026-11-20/", "2026-01-09-odds/"]
    );
    // Title, kicker, date and preheader, escaped.
    assert!(index.contains("Tom &amp; Jerry &lt;live&gt; &quot;quoted&quot;"));
    assert!(index.contains("Odds &amp; ends"));
    assert!(index.contains("Friday, 20 November 2026"));
    assert!(index.contains("A &lt; B &amp; C &gt; D"));
    assert!(index.contains("Sleeper routes are back on the map."));
    // Nothing is left beside the archive after two runs.
    let beside: Vec<String> = std::fs::read_dir(n.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("site"))
        .collect();
    assert_eq!(beside, ["site"]);
}

/// The edition links of the index (`<slug>/`), in document order.
fn links_in_order(index: &str) -> Vec<String> {
    hrefs(index)
        .into_iter()
        .filter(|h| h.ends_with('/') && !h.contains(':'))
        .collect()
}

#[test]
fn feed_is_atom_with_one_entry_per_edition() {
    let n = Newsletter::sample();
    n.write("editions/2026-01-09-odds.md", OLD_EDITION);
    archive(&n, LATER, &["--all"]);
    let xml = n.read("site/feed.xml");
    let doc = roxmltree::Document::parse(&xml).expect("feed.xml is XML");
    let atom = "http://www.w3.org/2005/Atom";
    let feed = doc.root_element();
    assert_eq!(feed.tag_name().name(), "feed");
    assert_eq!(feed.tag_name().namespace(), Some(atom));
    let child = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children()
            .find(|c| c.has_tag_name((atom, name)))
            .unwrap_or_else(|| panic!("no <{name}>"))
            .text()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(child(feed, "title"), "The Harbour Brief");
    assert_eq!(child(feed, "updated"), "2026-12-04T06:00:00Z");
    let entries: Vec<_> = feed
        .children()
        .filter(|c| c.has_tag_name((atom, "entry")))
        .collect();
    let pages: Vec<String> = files(&n.path("site"))
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.ends_with("/index.html"))
        .collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries.len(), pages.len());
    let titles: Vec<String> = entries.iter().map(|e| child(*e, "title")).collect();
    assert_eq!(
        titles,
        [
            "Who pays for the grid?",
            "The slow comeback of the night train",
            "Tom & Jerry <live> \"quoted\" and 'single'"
        ]
    );
    for e in &entries {
        let id = child(*e, "id");
        assert!(
            id.starts_with(&format!("{BASE_URL}/")) && id.ends_with('/'),
            "{id}"
        );
        let slug = id
            .trim_start_matches(&format!("{BASE_URL}/"))
            .trim_end_matches('/');
        assert!(pages.contains(&format!("{slug}/index.html")), "{slug}");
        let link = e
            .children()
            .find(|c| c.has_tag_name((atom, "link")))
            .expect("link");
        assert_eq!(link.attribute("href"), Some(id.as_str()));
        let updated = child(*e, "updated");
        assert!(
            chrono::DateTime::parse_from_rfc3339(&updated).is_ok(),
            "{updated}"
        );
    }
    assert_eq!(child(entries[2], "summary"), "A < B & C > D");
}

#[test]
fn every_relative_link_resolves_and_nothing_third_party_loads() {
    let n = Newsletter::sample();
    n.write("editions/2026-01-09-odds.md", OLD_EDITION);
    archive(&n, LATER, &["--all"]);
    let site = n.path("site");
    let mut checked = 0;
    for (rel, path) in files(&site) {
        if !rel.ends_with(".html") {
            continue;
        }
        let html = std::fs::read_to_string(&path).unwrap();
        let here = Path::new(&rel).parent().unwrap_or(Path::new(""));
        for link in hrefs(&html) {
            if link.contains(':') || link.starts_with('#') {
                continue;
            }
            assert!(!link.starts_with('/'), "{rel}: root-relative link {link}");
            let target = link.split(['?', '#']).next().unwrap_or("");
            let mut resolved = site.join(here).join(target);
            if target.is_empty() || target.ends_with('/') {
                resolved = resolved.join("index.html");
            }
            let resolved = resolved
                .canonicalize()
                .unwrap_or_else(|_| panic!("{rel}: {link} does not resolve"));
            assert!(
                resolved.starts_with(site.canonicalize().unwrap()) && resolved.is_file(),
                "{rel}: {link} leaves the archive"
            );
            checked += 1;
        }
        // Resources: only the edition's own images, nothing else from elsewhere.
        for src in attribute_values(&html, "src=\"") {
            let in_an_edition = std::fs::read_dir(n.path("editions")).unwrap().any(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .contains(&src)
            });
            assert!(in_an_edition, "{rel} loads {src}");
        }
        assert!(!html.contains("<link rel=\"stylesheet\""), "{rel}");
        assert!(!html.contains("@import"), "{rel}");
    }
    // Index → 3 pages + feed; each page → index + feed (twice).
    assert!(checked >= 3 + 1 + 3 * 2, "only {checked} relative links");
}

#[test]
fn refuses_to_replace_a_folder_that_is_not_an_archive() {
    let n = Newsletter::sample();
    n.write("notes/keep.txt", "mine");
    let out = n.run_at(LATER, &["archive", "--out", "notes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not look like an archive"));
    assert_eq!(n.read("notes/keep.txt"), "mine");
}

#[test]
fn a_broken_draft_is_reported_a_broken_published_edition_stops_the_archive() {
    let n = Newsletter::sample();
    // A draft being written: reported with file:line:column, left out, the rest published.
    n.write(
        "editions/broken.md",
        "+++\ntitle = \"x\"\ndate = 2026-01-01\ncolour = 1\n+++\n",
    );
    let out = n.run_at(BETWEEN, &["archive"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("broken.md:4:1: warning: unknown key `colour`"),
        "{err}"
    );
    assert!(err.contains("left out of the archive"), "{err}");
    assert!(n.path("site/2026-11-20/index.html").is_file());
    // --all asks for every edition: a broken one is an error.
    let out = n.run_at(BETWEEN, &["archive", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.md:4:1: error:"));

    // A published edition broken by a later edit: an error, and the archive stays as it was.
    let page = n.read("site/2026-11-20/index.html");
    let source = n.read("editions/2026-11-20.md");
    n.write(
        "editions/2026-11-20.md",
        &source.replacen("kicker = ", "kickr = ", 1),
    );
    let out = n.run_at(LATER, &["archive"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2026-11-20.md:4:1: error: unknown key `kickr`"),
        "{err}"
    );
    assert_eq!(n.read("site/2026-11-20/index.html"), page);
    assert!(!n.path("site/2026-12-04").exists());
}

fn hrefs(html: &str) -> Vec<String> {
    attribute_values(html, "href=\"")
}

fn attribute_values(html: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push(after[..end].replace("&amp;", "&"));
        rest = &after[end..];
    }
    out
}

/// `brief serve` on a free port; killed when dropped.
struct Serve {
    child: std::process::Child,
    addr: String,
}

impl Serve {
    fn start(n: &Newsletter) -> Serve {
        use std::io::BufRead;
        let mut child = n
            .command_at(LATER, &[])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start brief serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(addr) => Serve { child, addr },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("brief serve did not start");
            }
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.addr, path)
    }
}

/// GET `path`: status and body (`None` if the connection failed).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The email's "view in browser" link lands on the page, through `brief serve`, and
/// a reader never sees a half-written archive while `brief archive` runs again and again.
#[test]
fn serve_answers_the_view_in_browser_link_during_rebuilds() {
    let n = Newsletter::sample();
    // No per-client rate limit: this test is one busy client.
    let config = n.read("brief.toml");
    n.write(
        "brief.toml",
        &config.replace("[unsubscribe]\n", "[unsubscribe]\nclient_rate = 0\n"),
    );
    archive(&n, LATER, &[]);
    let serve = Serve::start(&n);
    let link = brief::token::web_url(BASE_URL, "2026-11-20");
    let path = format!("/brief{}", link.trim_start_matches(BASE_URL));
    assert_eq!(path, "/brief/2026-11-20/");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let page = loop {
        match serve.get(&path) {
            Some((200, body)) => break body,
            other => {
                assert!(std::time::Instant::now() < deadline, "{other:?}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    assert!(page.contains("The slow comeback of the night train"));
    assert_eq!(serve.get("/brief/feed.xml").map(|r| r.0), Some(200));

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let addr = serve.addr.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for p in ["/brief/", "/brief/2026-11-20/", "/brief/feed.xml"] {
                    let (status, body) = http_get(&addr, p).expect("serve answers");
                    assert_eq!(status, 200, "{p} during a rebuild");
                    let end = if p.ends_with(".xml") {
                        "</feed>\n"
                    } else {
                        "</html>"
                    };
                    assert!(
                        body.trim_end().ends_with(end.trim_end()),
                        "{p} was cut short"
                    );
                    seen += 1;
                }
            }
            seen
        })
    };
    for _ in 0..8 {
        archive(&n, LATER, &[]);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().expect("the reader saw every page whole");
    assert!(seen >= 3, "{seen}");
}

/// A newsletter whose own footer still uses personal fields without `{{#if web}}`:
/// the archive leaves them empty, says so, and still shows nobody's data.
#[test]
fn personal_fields_in_an_old_template_stay_empty_on_the_web() {
    let n = Newsletter::sample();
    n.write(
        "subscribers/editors.csv",
        "email,name,city\nsentinel.first.editor@example.net,Sentinel Firsteditor,Sentinelburg\n",
    );
    n.write(
        "templates/footer.mjml.hbs",
        "<mj-section><mj-column><mj-text>Hello {{subscriber.name}} from {{subscriber.city}} \
         ({{subscriber.email}}): <a href=\"{{unsubscribe_url}}\">leave</a></mj-text></mj-column></mj-section>\n",
    );
    let out = n.run_at(LATER, &["archive"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: a template uses")
            && stderr.contains("subscriber.name")
            && stderr.contains("unsubscribe_url"),
        "{stderr}"
    );
    let page = n.read("site/2026-11-20/index.html");
    assert!(
        page.contains("Hello  from  (): <a href=\"../\">leave</a>"),
        "{page}"
    );
    for (rel, path) in files(&n.path("site")) {
        let text = std::fs::read_to_string(path).unwrap().to_lowercase();
        for f in ["sentinel", "/u/", "ana@news.example.org"] {
            assert!(!text.contains(f), "{rel} contains {f}");
        }
    }
}

/// An edition without `send_at` is archived once `brief send` has sent it for real; a
/// test send does not publish it.
#[test]
fn an_edition_sent_by_hand_is_archived_a_test_send_is_not() {
    let n = Newsletter::sample();
    n.write(
        "subscribers/readers.csv",
        "email,name,city\nreader.one@example.net,Reader One,Ghent\n",
    );
    n.write(
        "editions/2026-11-22-extra.md",
        "+++\ntitle = \"An extra edition\"\ndate = 2026-11-22\n+++\n\nSent by hand.\n",
    );
    let send = |args: &[&str]| {
        let mut all = vec!["send", "--edition", "2026-11-22-extra"];
        all.extend_from_slice(args);
        let out = n.run_at(BETWEEN, &all);
        assert!(
            out.status.success(),
            "brief send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    send(&["--test"]);
    archive(&n, BETWEEN, &[]);
    assert_eq!(links_in_order(&n.read("site/index.html")), ["2026-11-20/"]);

    send(&[]);
    archive(&n, BETWEEN, &[]);
    assert_eq!(
        links_in_order(&n.read("site/index.html")),
        ["2026-11-22-extra/", "2026-11-20/"]
    );
    assert!(n.path("site/2026-11-22-extra/index.html").is_file());
}

#[test]
fn subscribe_url_from_the_config_and_only_web_or_mail_urls() {
    let n = Newsletter::sample();
    let config = n.read("brief.toml");
    let with = |url: &str| {
        config.replace(
            "[archive]\n",
            &format!("[archive]\nsubscribe_url = \"{url}\"\n"),
        )
    };
    n.write(
        "brief.toml",
        &with("https://news.example.org/signup?from=archive&x=1"),
    );
    archive(&n, LATER, &[]);
    let href = "href=\"https://news.example.org/signup?from=archive&amp;x=1\"";
    assert!(n.read("site/index.html").contains(href));
    assert!(n.read("site/2026-12-04/index.html").contains(href));

    n.write("brief.toml", &with("javascript:alert(1)"));
    let out = n.run_at(LATER, &["archive"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("brief.toml:") && err.contains("`subscribe_url` must start with https://"),
        "{err}"
    );
}
