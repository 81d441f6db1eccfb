//! `brief serve`, the suppression commands and mailto unsubscribes, against the real
//! binary over real sockets.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

#[test]
fn get_and_head_change_nothing() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("ann@example.org", "2024-10-25", false);
    for _ in 0..20 {
        let res = server.get(&format!("/brief/u/{token}"));
        assert_eq!(res.status, 200);
        assert!(
            res.body.contains("Unsubscribe from The Brief?"),
            "{}",
            res.body
        );
        assert!(res.body.contains("a••••@example.org"));
        assert!(!res.body.contains("ann@example.org"));
    }
    let head = server.request("HEAD", &format!("/u/{token}"), &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let res = server.get(&format!("/brief/u/{token}"));
    assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let csp = res.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("form-action 'self'"));
    assert!(!res.body.contains("http://") && !res.body.contains("https://"));
    assert!(n.suppressions().is_empty());
}

#[test]
fn one_click_post_suppresses_durably_and_idempotently() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let hostile = [("Origin", "https://evil.example.net")];
    let multipart_ct = "multipart/form-data; boundary=----brief";
    let multipart = b"------brief\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n------brief--\r\n";
    let cases: [(&str, &str, &[u8], bool); 4] = [
        (
            "url@example.org",
            FORM,
            b"List-Unsubscribe=One-Click",
            false,
        ),
        (
            "url-origin@example.org",
            FORM,
            b"List-Unsubscribe=One-Click",
            true,
        ),
        ("multi@example.org", multipart_ct, multipart, false),
        ("multi-origin@example.org", multipart_ct, multipart, true),
    ];
    for (email, ct, body, with_origin) in cases {
        let token = n.token(email, "2024-10-25", false);
        let mut headers = vec![("Content-Type", ct)];
        if with_origin {
            headers.extend(hostile);
        }
        let res = server.request("POST", &format!("/brief/u/{token}"), &headers, body);
        assert_eq!(res.status, 200, "{email}: {}", res.body);
        assert_eq!(res.header("location"), None);
        assert!(res.body.contains("You are unsubscribed"));
        assert!(res
            .body
            .contains(&format!("action=\"{token}/resubscribe\"")));
    }
    let token = n.token("button@example.org", "2024-11-01", false);
    let res = server.request(
        "POST",
        &format!("/u/{token}"),
        &[("Content-Type", FORM)],
        b"action=unsubscribe",
    );
    assert_eq!(res.status, 200);

    let list = n.suppressions();
    let sources: Vec<(String, String, String)> = list
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_string(),
                s["source"].as_str().unwrap().to_string(),
                s["edition"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (email, ..) in cases {
        assert!(
            sources.contains(&(email.to_string(), "one-click".into(), "2024-10-25".into())),
            "{sources:?}"
        );
    }
    assert!(sources.contains(&(
        "button@example.org".into(),
        "page".into(),
        "2024-11-01".into()
    )));
    assert_eq!(list.len(), 5);

    // Again: same answer, still one record, first time kept.
    let first_at = list
        .iter()
        .find(|s| s["address"] == "url@example.org")
        .unwrap()["suppressed_at"]
        .clone();
    let token = n.token("url@example.org", "2024-10-25", false);
    for _ in 0..3 {
        let res = server.request(
            "POST",
            &format!("/brief/u/{token}"),
            &[("Content-Type", FORM)],
            b"List-Unsubscribe=One-Click",
        );
        assert_eq!(res.status, 200);
    }
    let again = n.suppressions();
    assert_eq!(again.len(), 5);
    assert_eq!(
        again
            .iter()
            .find(|s| s["address"] == "url@example.org")
            .unwrap()["suppressed_at"],
        first_at
    );
}

#[test]
fn post_without_a_known_body_changes_nothing() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("ann@example.org", "e1", false);
    let res = server.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        b"hello=world",
    );
    assert_eq!(res.status, 400);
    assert!(res.body.contains("Unsubscribe from The Brief?"));
    let res = server.request("PUT", &format!("/brief/u/{token}"), &[], b"");
    assert_eq!(res.status, 405);
    assert!(n.suppressions().is_empty());
}

#[test]
fn bad_tokens_all_get_the_same_page() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let reference = server.get("/brief/u/not-a-token");
    assert_eq!(reference.status, 404);
    assert!(reference.body.contains("This link is not valid"));
    let other_newsletter = brief::token::Keyring::new(SECRET.as_bytes(), "other.example.org")
        .issue("ann@example.org", "e1", false);
    let other_secret = brief::token::Keyring::new(
        b"another secret of enough length",
        CUSTOM_LIST_ID,
    )
    .issue("ann@example.org", "e1", false);
    for token in [
        other_newsletter,
        other_secret,
        String::new(),
        "x".repeat(5000),
    ] {
        for method in ["GET", "POST"] {
            let res = server.request(
                method,
                &format!("/brief/u/{token}"),
                &[("Content-Type", FORM)],
                b"List-Unsubscribe=One-Click",
            );
            assert_eq!(
                (res.status, &res.body),
                (404, &reference.body),
                "{method} {token}"
            );
        }
    }
    let mut runner = TestRunner::new(PropConfig {
        cases: 48,
        ..PropConfig::default()
    });
    runner
        .run(
            &("[a-z]{1,12}@[a-z]{1,10}\\.org", 0usize..2000),
            |(email, bit)| {
                let token = n.token(&email, "e1", false);
                let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
                let bit = bit % (raw.len() * 8);
                raw[bit / 8] ^= 1 << (bit % 8);
                let flipped = URL_SAFE_NO_PAD.encode(raw);
                let res = server.request(
                    "POST",
                    &format!("/brief/u/{flipped}"),
                    &[("Content-Type", FORM)],
                    b"List-Unsubscribe=One-Click",
                );
                prop_assert_eq!(res.status, 404);
                prop_assert_eq!(&res.body, &reference.body);
                Ok(())
            },
        )
        .unwrap();
    assert!(n.suppressions().is_empty());
}

#[test]
fn kill_9_right_after_the_answer_keeps_the_suppression() {
    let n = Newsletter::custom("");
    let mut server = n.serve();
    let token = n.token("durable@example.org", "e1", false);
    let res = server.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(res.status, 200);
    server.kill_9();
    let list = n.suppressions();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["address"], "durable@example.org");
}

#[test]
fn test_send_links_are_inert() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("editor@example.org", "e1", true);
    let get = server.get(&format!("/brief/u/{token}"));
    assert_eq!(get.status, 200);
    assert!(get.body.contains("This was a test message"));
    let post = server.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(post.status, 200);
    assert!(post.body.contains("This was a test message"));
    assert!(n.suppressions().is_empty());
}

#[test]
fn resubscribe_undoes_a_readers_own_unsubscribe_only() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("back@example.org", "e1", false);
    let path = format!("/brief/u/{token}");
    assert_eq!(
        server
            .request(
                "POST",
                &path,
                &[("Content-Type", FORM)],
                b"List-Unsubscribe=One-Click"
            )
            .status,
        200
    );
    assert_eq!(n.suppressions().len(), 1);
    let get = server.get(&format!("{path}/resubscribe"));
    assert_eq!(get.status, 200);
    assert_eq!(n.suppressions().len(), 1, "GET must not resubscribe");
    let res = server.request("POST", &format!("{path}/resubscribe"), &[], b"");
    assert_eq!(res.status, 200);
    assert!(res.body.contains("Welcome back"));
    assert!(res.body.contains(&format!("action=\"../{token}\"")));
    assert!(n.suppressions().is_empty());
    // A link with a trailing slash: the relative resubscribe action still lands right.
    let res = server.request(
        "POST",
        &format!("{path}/"),
        &[("Content-Type", FORM)],
        b"action=unsubscribe",
    );
    assert!(res.body.contains("action=\"resubscribe\""), "{}", res.body);
    let res = server.request("POST", &format!("{path}/resubscribe"), &[], b"");
    assert!(res.body.contains("Welcome back"));

    let out = n.run(&["unsubscribe", "boss@example.org"]);
    assert!(out.status.success());
    let token = n.token("boss@example.org", "e1", false);
    let res = server.request("POST", &format!("/brief/u/{token}/resubscribe"), &[], b"");
    assert_eq!(res.status, 200);
    assert!(res.body.contains("Still unsubscribed"), "{}", res.body);
    assert_eq!(n.suppressions()[0]["source"], "manual");
}

#[test]
fn rate_limit_answers_429() {
    let n = Newsletter::custom("client_rate = 0.01\nclient_burst = 3\n");
    let server = n.serve();
    let statuses: Vec<u16> = (0..8).map(|_| server.get("/brief/u/x").status).collect();
    assert_eq!(&statuses[..3], &[404, 404, 404]);
    assert!(statuses[3..].iter().all(|&s| s == 429), "{statuses:?}");
    let res = server.get("/brief/u/x");
    assert_eq!(res.header("retry-after"), Some("1"));
    // Health checks are never limited.
    assert_eq!(server.get("/healthz").status, 200);
    // Behind the proxy (peer on loopback) each client is its X-Forwarded-For last hop.
    let res = server.request(
        "GET",
        "/brief/u/x",
        &[("X-Forwarded-For", "203.0.113.9, 198.51.100.20")],
        b"",
    );
    assert_eq!(res.status, 404);
}

#[test]
fn body_and_header_limits() {
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("big@example.org", "e1", false);
    let big = vec![b'a'; 100_000];
    let res = server.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        &big,
    );
    assert_eq!(res.status, 413);
    let huge_header = "x".repeat(40_000);
    let res = server.request("GET", "/healthz", &[("X-Padding", &huge_header)], b"");
    assert_eq!(res.status, 431);
    assert!(n.suppressions().is_empty());
}

#[test]
fn archive_files_are_served_safely() {
    let n = Newsletter::custom("");
    let server = n.serve();
    // Before `brief archive` ran: not found, not an error.
    assert_eq!(server.get("/brief/").status, 404);
    n.write("site/index.html", "<h1>Archive</h1>");
    n.write("site/feed.xml", "<feed/>");
    n.write("site/2024-10-25/index.html", "<h1>Edition</h1>");
    n.write("secret.txt", "do not serve");

    let index = server.get("/brief/");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, "<h1>Archive</h1>");
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("public, max-age=300"));
    let edition = server.get("/brief/2024-10-25/");
    assert_eq!(edition.body, "<h1>Edition</h1>");
    assert_eq!(
        edition.header("cache-control"),
        Some("public, max-age=3600")
    );
    assert_eq!(server.get("/2024-10-25/").body, "<h1>Edition</h1>");
    let modified = edition
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let again = server.request(
        "GET",
        "/brief/2024-10-25/",
        &[("If-Modified-Since", &modified)],
        b"",
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let feed = server.get("/brief/feed.xml");
    assert!(feed
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/atom+xml"));
    let moved = server.get("/brief/2024-10-25");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("2024-10-25/"));
    for bad in [
        "/brief/../secret.txt",
        "/brief/%2e%2e/secret.txt",
        "/../secret.txt",
        "/brief/2024-10-25/../../brief.toml",
        "/brief/..%2fsecret.txt",
    ] {
        let res = server.get(bad);
        assert_eq!(res.status, 404, "{bad}");
        assert!(!res.body.contains("do not serve"));
    }
    assert_eq!(server.request("POST", "/brief/", &[], b"").status, 405);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let n = Newsletter::custom("");
    let mut server = n.serve();
    assert_eq!(server.get("/healthz").status, 200);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        server.stderr().contains("brief serve: stopped"),
        "{}",
        server.stderr()
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    use std::io::{Read, Write};
    let n = Newsletter::custom("");
    let mut server = n.serve();
    let token = n.token("inflight@example.org", "e1", false);
    let body = b"List-Unsubscribe=One-Click";
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /brief/u/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    // Give the server time to read the head and start on the body; then stop it.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let pid = server.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream.write_all(&body[10..]).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(server.terminate().success());
    assert_eq!(n.suppressions().len(), 1);
}

#[test]
fn suppression_commands() {
    let n = Newsletter::custom("");
    let bad = n.run(&["unsubscribe", "ok@example.org", "not an address"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an address"));
    assert!(
        n.suppressions().is_empty(),
        "nothing changes when one address is invalid"
    );
    assert_eq!(n.run(&["unsubscribe"]).status.code(), Some(2));

    let ok = n.run(&["unsubscribe", "Ann@Example.org", "bob@example.org"]);
    assert!(ok.status.success());
    let list = n.suppressions();
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|s| s["source"] == "manual" && s["edition"].is_null()));
    let csv = n.run(&["suppressions", "--csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("address,suppressed_at,source,edition\n"),
        "{csv}"
    );
    assert!(
        csv.contains("Ann@Example.org,2030-01-02T03:04:05+00:00,manual,"),
        "{csv}"
    );
    let res = n.run(&["resubscribe", "ann@example.org"]);
    assert!(String::from_utf8_lossy(&res.stdout).contains("resubscribed ann@example.org"));
    assert_eq!(n.suppressions().len(), 1);
}

#[test]
fn mailto_requests_from_maildir_and_mbox() {
    let n = Newsletter::custom("");
    let plain = n.token("plain@example.org", "e1", false);
    let encoded = n.token("encoded@example.org", "e2", false);
    let in_body = n.token("body@example.org", "e3", false);
    let test = n.token("editor@example.org", "e1", true);
    let subject_b64 =
        base64::engine::general_purpose::STANDARD.encode(format!("unsubscribe-{encoded}"));
    // The body's token is cut by a quoted-printable soft line break.
    let (a, b) = in_body.split_at(20);
    n.write("mail/new/1", &format!("From: Plain <plain@example.org>\r\nTo: unsubscribe@news.example.org\r\nSubject: unsubscribe-{plain}\r\n\r\n"));
    n.write(
        "mail/new/2",
        &format!("From: someone@example.org\r\nSubject: =?UTF-8?B?{subject_b64}?=\r\n\r\n"),
    );
    n.write("mail/cur/3:2,S", &format!("From: body@example.org\r\nSubject: please\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nunsubscribe-{a}=\r\n{b}\r\n"));
    n.write(
        "mail/cur/4:2,S",
        &format!("From: editor@example.org\r\nSubject: unsubscribe-{test}\r\n\r\n"),
    );
    n.write(
        "mail/new/5",
        "From: victim@example.org\r\nSubject: unsubscribe me please\r\n\r\nI want out.\r\n",
    );
    n.write(
        "mail/new/6",
        "\u{0}\u{1}garbage without headers =?utf-8?B?@@@?=",
    );
    let out = n.run(&[
        "unsubscribe",
        "--from-maildir",
        n.path("mail").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "6 message(s): 3 unsubscribed, 0 already unsubscribed, 1 test, 2 without a valid token"
        ),
        "{stdout}"
    );
    let list = n.suppressions();
    let mut addresses: Vec<&str> = list
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            "body@example.org",
            "encoded@example.org",
            "plain@example.org"
        ]
    );
    assert!(list.iter().all(|s| s["source"] == "mailto"));
    assert!(
        !addresses.contains(&"victim@example.org"),
        "never guessed from From"
    );

    let other = n.token("mbox@example.org", "e4", false);
    n.write("mail.mbox", &format!("From MAILER-DAEMON Thu Jan  1 00:00:00 2030\nSubject: unsubscribe-{plain}\n\n>From the body\n\nFrom x@y Thu Jan  1 00:00:00 2030\nSubject: Re: unsubscribe-{other}\n\nthanks\n"));
    let out = n.run(&[
        "unsubscribe",
        "--from-mbox",
        n.path("mail.mbox").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "2 message(s): 1 unsubscribed, 1 already unsubscribed, 0 test, 0 without a valid token"
        ),
        "{stdout}"
    );
    assert_eq!(n.suppressions().len(), 4);
}

#[test]
fn retired_secret_works_until_it_expires() {
    let n = Newsletter::custom("previous_secret_env = \"BRIEF_OLD_SECRET\"\nprevious_secret_expires = 2030-06-30T00:00:00Z\n");
    let old = brief::token::Keyring::new(OLD_SECRET.as_bytes(), CUSTOM_LIST_ID);
    n.write(
        "before.mbox",
        &format!(
            "From a@b Thu Jan  1 00:00:00 2030\nSubject: unsubscribe-{}\n\n",
            old.issue("early@example.org", "e1", false)
        ),
    );
    n.write(
        "after.mbox",
        &format!(
            "From a@b Thu Jan  1 00:00:00 2030\nSubject: unsubscribe-{}\n\n",
            old.issue("late@example.org", "e1", false)
        ),
    );
    let before = n.run_at(
        "2030-06-29T23:59:00Z",
        &[
            "unsubscribe",
            "--from-mbox",
            n.path("before.mbox").to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&before.stdout).contains("1 unsubscribed"));
    let after = n.run_at(
        "2030-06-30T00:00:01Z",
        &[
            "unsubscribe",
            "--from-mbox",
            n.path("after.mbox").to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&after.stdout).contains("1 without a valid token"));
    assert_eq!(n.suppressions().len(), 1);
}

/// Headless Chromium loads the confirmation page at 375 px and presses its button with
/// a real mouse event (scripts/cdp-unsubscribe.py drives it over the DevTools protocol;
/// page scripts are forbidden by the CSP, so nothing is injected into the page).
#[test]
fn confirmation_button_works_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "this test needs headless Chromium at /usr/bin/chromium (Debian package `chromium`)"
    );
    let n = Newsletter::custom("");
    let server = n.serve();
    let token = n.token("browser@example.org", "2024-10-25", false);
    let shots = n.path("shots").display().to_string();
    let mut child = std::process::Command::new("python3")
        .arg(support("cdp_unsubscribe.py"))
        .args([&format!("http://{}/brief/u/{token}", server.addr), &shots])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to drive Chromium");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Chromium check did not finish in 180 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for png in ["confirm.png", "unsubscribed.png", "resubscribed.png"] {
        let bytes = std::fs::read(format!("{shots}/{png}")).expect(png);
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{png} is not a PNG"
        );
    }
    // The last step pressed "unsubscribe after all": the page's button, source `page`.
    let list = n.suppressions();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["address"], "browser@example.org");
    assert_eq!(list[0]["source"], "page");
}
