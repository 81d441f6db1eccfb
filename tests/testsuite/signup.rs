//! Readers sign up themselves: `brief serve`'s form and JSON API, double opt-in with
//! the confirmation mail through brief's own delivery path (aiosmtpd, or the outbox),
//! the preference centre, erasure, managed lists in sends, `brief subscribers`, and
//! Chromium filling in the form at 375 px (`support/cdp_signup.py`).

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const LISTS: &str = r#"
[lists.local]
title = "Local news"
description = "Every Friday: what happened in town."

[lists.culture]
title = "Culture"
description = "Exhibitions, concerts & <books>."
"#;

/// A generated newsletter (readers.csv: reader0000, reader0001) whose default audience
/// is `readers` and the managed list `local`, with `culture` managed too; `signup` is
/// the `[signup]` section's keys (the signup rate limit is off unless it sets
/// `client_rate`).
fn newsletter(smtp_port: Option<u16>, signup: &str) -> Newsletter {
    let n = Newsletter::generated(2, smtp_port);
    let toml = n.read("brief.toml").replacen(
        "postal_address = \"1 Example Street, Brussels\"\n",
        "postal_address = \"1 Example Street, Brussels\"\naudience = [\"readers\", \"local\"]\n",
        1,
    );
    let rate = if signup.contains("client_rate") {
        ""
    } else {
        "client_rate = 1000\nclient_burst = 1000\n"
    };
    n.write(
        "brief.toml",
        &format!("{toml}{LISTS}\n[signup]\n{rate}{signup}\n"),
    );
    n
}

fn form_post(server: &Server, body: &str) -> Response {
    server.request(
        "POST",
        "/brief/subscribe",
        &[("Content-Type", FORM)],
        body.as_bytes(),
    )
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The signup mails written to the outbox (`outbox/reports/`): (To, subject, body).
fn outbox_mails(n: &Newsletter) -> Vec<(String, String, String)> {
    let dir = n.path("outbox/reports");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| parse_mail(&std::fs::read(p).unwrap()))
        .collect()
}

fn parse_mail(raw: &[u8]) -> (String, String, String) {
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a message");
    let to = m
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_lowercase();
    (
        to,
        m.subject().unwrap_or_default().to_string(),
        m.body_text(0).unwrap_or_default().into_owned(),
    )
}

/// Waits (bounded) until `found` holds.
fn eventually<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The link in a mail body that starts with `prefix`.
fn link(body: &str, prefix: &str) -> String {
    let start = body
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix}… link in:\n{body}"));
    body[start..].split_whitespace().next().unwrap().to_string()
}

/// A link of the public base URL, on the test server.
fn local(server: &Server, url: &str) -> String {
    url.replacen(
        "https://news.example.org",
        &format!("http://{}", server.addr),
        1,
    )
}

fn path_of(url: &str) -> String {
    url.replacen("https://news.example.org", "", 1)
}

fn subscribers(n: &Newsletter, list: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["subscribers", "list", "--json"];
    if let Some(l) = list {
        args.extend(["--list", l]);
    }
    let out = n.run(&args);
    assert_eq!(code(&out), Some(0));
    match serde_json::from_slice(&out.stdout).expect("JSON") {
        serde_json::Value::Array(a) => a,
        other => panic!("not a list: {other}"),
    }
}

fn run_python(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new("python3")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to drive Chromium");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Chromium check did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_reader_signs_up_in_chromium_confirms_and_gets_the_next_edition() {
    let smtp = Server::aiosmtpd(serde_json::json!({}));
    // The proof of work is on: the form's own script has to find it in Chromium.
    let n = newsletter(Some(smtp.port), "proof_of_work = 10\n");
    let server = n.serve();
    let shots = n.path("shots").display().to_string();
    let form_url = format!("http://{}/brief/subscribe", server.addr);
    run_python(&[
        support("cdp_signup.py").to_str().unwrap(),
        "form",
        &form_url,
        "nina.reader@example.net",
        "Nina Reader",
        &shots,
    ]);
    let confirm_mail = eventually("the confirmation mail at aiosmtpd", || {
        smtp.messages()
            .into_iter()
            .find(|(rcpt, _)| rcpt == "nina.reader@example.net")
    });
    let (_, subject, body) = parse_mail(confirm_mail.1.as_bytes());
    assert_eq!(subject, "Confirm your subscription to The Test Brief");
    assert!(
        body.contains("Local news") && body.contains("Culture"),
        "{body}"
    );
    assert!(body.contains("it works for 2 days"), "{body}");
    assert!(
        confirm_mail
            .1
            .contains("From: \"The Test Brief\" <brief@news.example.org>")
            || confirm_mail
                .1
                .contains("From: The Test Brief <brief@news.example.org>"),
        "{}",
        confirm_mail.1
    );
    let confirm = link(&body, "https://news.example.org/brief/s/");
    // Nothing is subscribed before the link is used, and opening it (GET) only asks.
    assert!(subscribers(&n, None).is_empty());
    let asked = server.get(&path_of(&confirm));
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Confirm your subscription"));
    assert!(subscribers(&n, None).is_empty());
    let status = n.run(&["status", "--lists", "--json"]);
    let lists: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(lists[1]["list"], "local");
    assert_eq!(
        (n_(&lists[1], "confirmed"), n_(&lists[1], "pending")),
        (0, 1)
    );

    let out = run_python(&[
        support("cdp_signup.py").to_str().unwrap(),
        "confirm",
        &local(&server, &confirm),
        &shots,
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("/brief/p/"));
    for png in [
        "form.png",
        "filled.png",
        "inbox.png",
        "confirm.png",
        "subscribed.png",
    ] {
        let bytes = std::fs::read(format!("{shots}/{png}")).expect(png);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
    }
    let readers = subscribers(&n, None);
    assert_eq!(readers.len(), 1, "{readers:?}");
    assert_eq!(readers[0]["address"], "nina.reader@example.net");
    assert_eq!(readers[0]["name"], "Nina Reader");
    assert_eq!(readers[0]["lists"], serde_json::json!(["culture", "local"]));
    let consent = &readers[0]["consents"][0];
    assert_eq!(consent["form"], "signup form");
    assert_eq!(consent["lists"], serde_json::json!(["culture", "local"]));
    assert!(consent["text"]
        .as_str()
        .unwrap()
        .contains("I want to receive The Test Brief"));
    let status = n.run(&["status", "--lists", "--json"]);
    let lists: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (n_(&lists[1], "confirmed"), n_(&lists[1], "pending")),
        (1, 0)
    );

    let welcome = eventually("the welcome mail", || {
        smtp.messages()
            .into_iter()
            .map(|(_, raw)| parse_mail(raw.as_bytes()))
            .find(|(to, subject, _)| {
                to == "nina.reader@example.net" && subject.starts_with("Welcome")
            })
    });
    assert!(
        welcome.2.contains("https://news.example.org/brief/p/"),
        "{}",
        welcome.2
    );
    drop(server);

    // The next edition goes to the new reader (managed list `local`) and the CSV's.
    let send = n.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&send), Some(0));
    let edition = smtp
        .messages()
        .into_iter()
        .filter(|(rcpt, raw)| rcpt == "nina.reader@example.net" && raw.contains("Night trains"))
        .collect::<Vec<_>>();
    assert_eq!(edition.len(), 1);
    let raw = &edition[0].1;
    assert!(
        raw.contains("Nina Reader"),
        "the To name comes from the managed list"
    );
    let (_, _, text) = parse_mail(raw.as_bytes());
    let preferences = link(&text, "https://news.example.org/brief/p/");
    let unsubscribe = link(&text, "https://news.example.org/brief/u/");
    assert_eq!(preferences.replacen("/p/", "/u/", 1), unsubscribe);
    let sent = n.recipients("sent");
    assert_eq!(sent.len(), 3, "{sent:?}");
}

fn n_(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn enumeration_probes_get_identical_answers() {
    let n = newsletter(None, "");
    assert_eq!(
        code(&n.run(&[
            "subscribers",
            "add",
            "confirmed@example.org",
            "--list",
            "local",
            "--consent",
            "asked at the fair",
        ])),
        Some(0)
    );
    assert_eq!(
        code(&n.run(&["unsubscribe", "blocked@example.org"])),
        Some(0)
    );
    let server = n.serve();
    // A reader who left by one-click.
    let left = n.token("left@example.org", "e1", false);
    let one_click = server.request(
        "POST",
        &format!("/brief/u/{left}"),
        &[("Content-Type", FORM)],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(one_click.status, 200);
    assert_eq!(
        form_post(&server, "email=pending%40example.org&list=local").status,
        200
    );

    let probes = [
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "left@example.org",
        "blocked@example.org",
    ];
    type Answer = (u16, String, Vec<(String, String)>);
    let answers: Vec<Answer> = probes
        .iter()
        .map(|email| {
            let r = form_post(&server, &format!("email={}&list=local&name=X", enc(email)));
            let headers = r
                .headers
                .iter()
                .filter(|(k, _)| k != "date")
                .cloned()
                .collect();
            (r.status, r.body, headers)
        })
        .collect();
    for (probe, answer) in probes.iter().zip(&answers) {
        assert_eq!(answer, &answers[0], "{probe} is answered differently");
    }
    assert_eq!(answers[0].0, 200);
    assert!(answers[0].1.contains("Check your inbox"));
    let api: Vec<(u16, String)> = probes
        .iter()
        .map(|email| {
            let r = server.request(
                "POST",
                "/brief/api/subscribe",
                &[("Content-Type", "application/json")],
                serde_json::json!({"email": email, "lists": ["culture"]})
                    .to_string()
                    .as_bytes(),
            );
            (r.status, r.body)
        })
        .collect();
    assert!(api.iter().all(|a| a == &api[0]), "{api:?}");
    assert_eq!(api[0].0, 202);

    // Behind the one answer: mail to everyone who may be mailed, none to the address
    // the editors blocked; the reader who left is asked to confirm (that lifts it).
    eventually("the confirmation mails", || {
        (outbox_mails(&n).len() >= 9).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let mails = outbox_mails(&n)
        .into_iter()
        .chain(std::iter::empty())
        .collect::<Vec<_>>();
    assert!(mails.len() >= 9);
    let count = |who: &str| mails.iter().filter(|(to, _, _)| to == who).count();
    assert_eq!(count("blocked@example.org"), 0);
    assert_eq!(count("left@example.org"), 2);
    assert_eq!(count("pending@example.org"), 3);
    assert_eq!(count("confirmed@example.org"), 2);
    assert_eq!(count("new@example.org"), 2);
    // The reader who left confirms: the suppression is lifted, the list joined.
    let (_, _, body) = mails
        .iter()
        .find(|(to, _, _)| to == "left@example.org")
        .unwrap();
    let confirm = link(body, "https://news.example.org/brief/s/");
    let done = server.request("POST", &path_of(&confirm), &[("Content-Type", FORM)], b"");
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(n
        .suppressions()
        .iter()
        .all(|s| s["address"] != "left@example.org"));
    // (Its form asked for `local`, its API call for `culture`: either mail will do.)
    assert!(subscribers(&n, None)
        .iter()
        .any(|r| r["address"] == "left@example.org"));
    // An address the editors blocked stays blocked even with a valid link.
    assert!(n
        .suppressions()
        .iter()
        .any(|s| s["address"] == "blocked@example.org"));
}

#[test]
fn hostile_input_in_every_field_is_refused_or_made_harmless() {
    let n = newsletter(None, "");
    let server = n.serve();
    let long = "a".repeat(5000);
    let bodies: Vec<String> = vec![
        format!(
            "email={}&list=local",
            enc("a@example.org\r\nBcc: victim@example.net")
        ),
        format!(
            "email={}&list=local",
            enc("<script>alert(1)</script>@example.org")
        ),
        format!("email={}&list=local", enc(&format!("{long}@example.org"))),
        format!("email={}&list=local", enc("\"quoted\r\n\"@example.org")),
        format!("email=a%40example.org&list={}", enc("../../etc/passwd")),
        format!("email=a%40example.org&list={}", enc("<b>local</b>")),
        format!("email=a%40example.org&list=local&name={}", enc(&long)),
        format!(
            "email=a%40example.org&list=local&name={}",
            enc("Ann\r\nBcc: victim@example.net")
        ),
        format!(
            "email=a%40example.org&list=local&name={}",
            enc("evil\u{202e}gnp.exe")
        ),
        format!(
            "email=a%40example.org&list=local&name={}",
            enc("\u{E000}unsubscribe_url\u{E001}")
        ),
        "email=%ff%fe%00&list=local".to_string(),
        "email=&list=".to_string(),
        "%%%%&&&==".to_string(),
        String::new(),
    ];
    for body in &bodies {
        let r = form_post(&server, body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(!r.body.contains("<script>alert"), "{body}");
        assert!(!r.body.contains("<b>local"), "{body}");
        assert!(r.body.contains("class=\"error\""), "{body}");
    }
    // The values typed are shown back escaped.
    let r = form_post(
        &server,
        &format!(
            "email={}&list=local&name={}",
            enc("x\"><script>alert(1)</script>"),
            enc("\"><img src=x onerror=alert(1)>")
        ),
    );
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("<script>alert") && !r.body.contains("<img src=x"));
    assert!(r.body.contains("&quot;&gt;&lt;img"));
    // A name with markup is a valid name: kept as text, escaped wherever shown.
    let ok = form_post(
        &server,
        &format!(
            "email=ann%40example.org&list=local&name={}",
            enc("<script>alert(1)</script> & Co")
        ),
    );
    assert_eq!(ok.status, 200);
    let api_cases: [(&str, &[u8]); 6] = [
        ("application/json", b"{not json"),
        ("application/json", b"[1,2,3]"),
        (
            "application/json",
            br#"{"email": {"$ne": null}, "lists": "local"}"#,
        ),
        (
            "application/json",
            br#"{"email": "a@example.org", "lists": ["nope"]}"#,
        ),
        (
            "application/json",
            br#"{"email": "a@example.org\r\nBcc: v@example.net"}"#,
        ),
        ("text/plain", b"\x00\x01\x02"),
    ];
    for (ct, body) in api_cases {
        let r = server.request(
            "POST",
            "/brief/api/subscribe",
            &[("Content-Type", ct)],
            body,
        );
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.body
        );
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON error");
        assert!(v["error"].is_string());
    }
    let big = vec![b'a'; 100_000];
    let r = server.request("POST", "/brief/subscribe", &[("Content-Type", FORM)], &big);
    assert_eq!(r.status, 413);
    assert_eq!(server.get("/healthz").status, 200);

    eventually("ann's confirmation mail", || {
        (!outbox_mails(&n).is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mails = outbox_mails(&n);
    assert!(
        mails.iter().all(|(to, _, _)| to == "ann@example.org"),
        "{mails:?}"
    );
    assert_eq!(mails.len(), 1);
    let confirm = link(&mails[0].2, "https://news.example.org/brief/s/");
    let page = server.get(&path_of(&confirm));
    assert!(!page.body.contains("<script>alert"));
    let done = server.request("POST", &path_of(&confirm), &[], b"");
    assert_eq!(done.status, 200);
    // In the preference centre the name is an input's value, escaped.
    let token = n.token("ann@example.org", "e1", false);
    let prefs = server.get(&format!("/brief/p/{token}"));
    assert_eq!(prefs.status, 200);
    assert!(
        prefs
            .body
            .contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co\""),
        "{}",
        prefs.body
    );
    assert!(prefs
        .body
        .contains("Exhibitions, concerts &amp; &lt;books&gt;."));
}

#[test]
fn expired_and_forged_confirmation_links_change_nothing() {
    let n = newsletter(None, "confirm_within = \"1d\"\n");
    let server = n.serve();
    assert_eq!(
        form_post(&server, "email=late%40example.org&list=local").status,
        200
    );
    let mails = eventually("the confirmation mail", || {
        let m = outbox_mails(&n);
        (!m.is_empty()).then_some(m)
    });
    assert!(
        mails[0].2.contains("it works for 24 hours"),
        "{}",
        mails[0].2
    );
    let confirm = path_of(&link(&mails[0].2, "https://news.example.org/brief/s/"));
    let token = confirm.rsplit('/').next().unwrap().to_string();
    let mut flipped = token.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let forged = [
        String::from_utf8(flipped).unwrap(),
        token[..token.len() - 4].to_string(),
        format!("{token}AAAA"),
        // The reader's unsubscribe token is not a confirmation link.
        n.token("late@example.org", "e1", false),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "%00".to_string(),
    ];
    let invalid = server.get(&format!("/brief/s/{}", forged[0]));
    assert_eq!(invalid.status, 404);
    assert!(invalid.body.contains("This link is not valid"));
    for f in &forged {
        for method in ["GET", "POST"] {
            let r = server.request(
                method,
                &format!("/brief/s/{f}"),
                &[("Content-Type", FORM)],
                b"",
            );
            assert_eq!((r.status, &r.body), (404, &invalid.body), "{method} {f}");
        }
    }
    assert!(subscribers(&n, None).is_empty());
    drop(server);
    // A day and a second later the link has expired, for GET and POST alike.
    let later = n.serve_at("2026-11-21T09:00:01Z");
    for method in ["GET", "POST"] {
        let r = later.request(method, &confirm, &[("Content-Type", FORM)], b"");
        assert_eq!(r.status, 410, "{method}");
        assert!(r.body.contains("This link has expired"));
        assert!(r
            .body
            .contains("href=\"https://news.example.org/brief/subscribe\""));
    }
    assert!(subscribers(&n, None).is_empty());
    drop(later);
    // Within its day it works, once and again (a double click adds nothing more).
    let server = n.serve_at("2026-11-21T08:59:00Z");
    for _ in 0..2 {
        let r = server.request("POST", &confirm, &[("Content-Type", FORM)], b"");
        assert_eq!(r.status, 200);
        assert!(r.body.contains("You are subscribed"));
    }
    let readers = subscribers(&n, None);
    assert_eq!(readers.len(), 1);
    let welcomes = eventually("one welcome mail", || {
        let w: Vec<_> = outbox_mails(&n)
            .into_iter()
            .filter(|(_, s, _)| s.starts_with("Welcome"))
            .collect();
        (!w.is_empty()).then_some(w)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(welcomes.len(), 1);
}

#[test]
fn abuse_limits_honeypot_pending_bound_rate_and_proof_of_work() {
    let n = newsletter(None, "max_pending_per_address = 2\nproof_of_work = 8\n");
    let server = n.serve();
    let challenge = |server: &Server| -> String {
        let page = server.get("/brief/subscribe");
        assert_eq!(page.status, 200);
        let csp = page
            .header("content-security-policy")
            .unwrap_or_default()
            .to_string();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        let start = page
            .body
            .find("name=\"challenge\" value=\"")
            .expect("a challenge")
            + 24;
        page.body[start..].split('"').next().unwrap().to_string()
    };
    let solve = |c: &str| -> String {
        (0u64..)
            .map(|i| i.to_string())
            .find(|w| {
                let d = Sha256::digest(format!("{c}:{w}").as_bytes());
                d[0] == 0
            })
            .unwrap()
    };
    // Without the work (and with the clock standing still, no wait either): refused.
    let c = challenge(&server);
    let r = form_post(
        &server,
        &format!("email=pow%40example.org&list=local&challenge={}", enc(&c)),
    );
    assert_eq!(r.status, 400);
    let w = solve(&c);
    let body = format!(
        "email=pow%40example.org&list=local&challenge={}&work={w}",
        enc(&c)
    );
    assert_eq!(form_post(&server, &body).status, 200);
    // A solved challenge answers once.
    assert_eq!(form_post(&server, &body).status, 400);
    // The honeypot: the same answer, no mail.
    let c = challenge(&server);
    let w = solve(&c);
    let trap = form_post(
        &server,
        &format!(
            "email=bot%40example.org&list=local&website=http%3A%2F%2Fspam&challenge={}&work={w}",
            enc(&c)
        ),
    );
    assert_eq!(trap.status, 200);
    assert!(trap.body.contains("Check your inbox"));
    // Two unconfirmed signups per address at most: the third gets no mail.
    for _ in 0..3 {
        let c = challenge(&server);
        let w = solve(&c);
        let r = form_post(
            &server,
            &format!(
                "email=many%40example.org&list=local&challenge={}&work={w}",
                enc(&c)
            ),
        );
        assert_eq!(r.status, 200);
    }
    let api = server.get("/brief/api/challenge");
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["bits"], 8);
    assert!(v["challenge"].is_string());
    std::thread::sleep(Duration::from_millis(800));
    let mails = outbox_mails(&n);
    let count = |who: &str| mails.iter().filter(|(to, _, _)| to == who).count();
    assert_eq!(count("pow@example.org"), 1);
    assert_eq!(count("bot@example.org"), 0);
    assert_eq!(count("many@example.org"), 2);
    drop(server);

    // The per-client rate: a burst of 2, then 429 with Retry-After.
    let n = newsletter(None, "client_rate = 0.01\nclient_burst = 2\n");
    let server = n.serve();
    for _ in 0..2 {
        assert_eq!(
            form_post(&server, "email=r%40example.org&list=local").status,
            200
        );
    }
    let limited = form_post(&server, "email=r%40example.org&list=local");
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    // Reading the form is not a signup: still served.
    assert_eq!(server.get("/brief/subscribe").status, 200);
}

#[test]
fn the_api_answers_configured_origins_only() {
    let n = newsletter(None, "cors_origins = [\"https://www.example.org\"]\n");
    let server = n.serve();
    let body =
        br#"{"email": "cms@example.org", "name": "From the CMS", "lists": ["local", "culture"]}"#;
    let ours = server.request(
        "POST",
        "/brief/api/subscribe",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://www.example.org"),
        ],
        body,
    );
    assert_eq!(ours.status, 202);
    assert_eq!(
        ours.header("access-control-allow-origin"),
        Some("https://www.example.org")
    );
    let theirs = server.request(
        "POST",
        "/brief/api/subscribe",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://evil.example.net"),
        ],
        body,
    );
    assert_eq!(theirs.status, 202);
    assert_eq!(theirs.header("access-control-allow-origin"), None);
    let preflight = server.request(
        "OPTIONS",
        "/brief/api/subscribe",
        &[
            ("Origin", "https://www.example.org"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(server.get("/brief/api/subscribe").status, 405);
    let mail = eventually("the API's confirmation mail", || {
        outbox_mails(&n)
            .into_iter()
            .find(|(to, _, _)| to == "cms@example.org")
    });
    let confirm = link(&mail.2, "https://news.example.org/brief/s/");
    assert_eq!(
        server.request("POST", &path_of(&confirm), &[], b"").status,
        200
    );
    let readers = subscribers(&n, None);
    assert_eq!(readers[0]["consents"][0]["form"], "api");
    assert_eq!(readers[0]["name"], "From the CMS");
}

#[test]
fn the_preference_centre_changes_only_on_same_origin_posts_and_erases_for_good() {
    let n = newsletter(None, "");
    let server = n.serve();
    let token = n.token("reader0000@example.org", "e1", false);
    let page = format!("/brief/p/{token}");
    for _ in 0..3 {
        let r = server.get(&page);
        assert_eq!(r.status, 200);
        assert!(r.body.contains("Your preferences"));
        assert!(r.body.contains("r••••@example.org") && !r.body.contains("reader0000@"));
    }
    assert!(subscribers(&n, None).is_empty());
    let same = [
        ("Content-Type", FORM),
        ("Origin", "https://news.example.org"),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    for foreign in [
        vec![
            ("Content-Type", FORM),
            ("Origin", "https://evil.example.net"),
        ],
        vec![("Content-Type", FORM), ("Sec-Fetch-Site", "cross-site")],
        vec![("Content-Type", FORM), ("Origin", "null")],
    ] {
        let r = server.request(
            "POST",
            &page,
            &foreign,
            b"action=save&list=local&name=Mallory",
        );
        assert_eq!(r.status, 403, "{foreign:?}");
    }
    assert!(subscribers(&n, None).is_empty());
    let saved = server.request(
        "POST",
        &page,
        &same,
        b"action=save&list=local&list=culture&name=Reader+Zero",
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains("Saved."));
    let readers = subscribers(&n, None);
    assert_eq!(readers[0]["lists"], serde_json::json!(["culture", "local"]));
    assert_eq!(readers[0]["name"], "Reader Zero");
    // Leaving one list keeps the other, and the reader confirmed.
    let confirmed_at = readers[0]["confirmed_at"].clone();
    let saved = server.request(
        "POST",
        &page,
        &same,
        b"action=save&list=local&name=Reader+Zero",
    );
    assert_eq!(saved.status, 200);
    let readers = subscribers(&n, None);
    assert_eq!(readers[0]["lists"], serde_json::json!(["local"]));
    assert_eq!(readers[0]["confirmed_at"], confirmed_at);

    assert_eq!(code(&n.run(&["send", "--edition", "e1"])), Some(0));
    let export = server.request("POST", &page, &same, b"action=export");
    assert_eq!(export.status, 200);
    assert!(export
        .header("content-disposition")
        .unwrap_or("")
        .contains("attachment"));
    let data: serde_json::Value = serde_json::from_str(&export.body).expect("JSON");
    assert_eq!(data["address"], "reader0000@example.org");
    assert_eq!(data["subscriptions"][0]["title"], "Local news");
    assert_eq!(data["consents"].as_array().unwrap().len(), 1);
    assert_eq!(data["consents"][0]["form"], "preferences");
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{data}");
    assert_eq!(messages[0]["edition"], "e1");
    assert_eq!(messages[0]["state"], "sent");

    // Delete asks first; then only a hash of the address is kept.
    let ask = server.request("POST", &page, &same, b"action=delete");
    assert!(ask.body.contains("Delete your data?"));
    assert_eq!(subscribers(&n, None).len(), 1);
    let gone = server.request("POST", &page, &same, b"action=delete&confirm=yes");
    assert_eq!(gone.status, 200);
    assert!(gone.body.contains("Your data is deleted"));
    assert!(subscribers(&n, None).is_empty());
    let suppressions = n.suppressions();
    assert_eq!(suppressions.len(), 1);
    let kept = suppressions[0]["address"].as_str().unwrap();
    assert!(
        kept.starts_with("sha256:") && !kept.contains("reader0000"),
        "{kept}"
    );
    let status = n.run(&["status", "--edition", "e1", "--recipients", "sent"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("reader0000"));
    let data: serde_json::Value =
        serde_json::from_str(&server.request("POST", &page, &same, b"action=export").body).unwrap();
    assert!(data["messages"].as_array().unwrap().is_empty());
    assert!(data["consents"].as_array().unwrap().is_empty());
    drop(server);

    // The stale CSV still lists the erased reader: the next edition skips them.
    n.write(
        "editions/e2.md",
        "+++\ntitle = \"The second one\"\ndate = 2026-11-27\n+++\n\nMore news.\n",
    );
    assert_eq!(code(&n.run(&["send", "--edition", "e2"])), Some(0));
    let sent = n.recipients_of("e2", "sent");
    assert_eq!(sent, vec!["reader0001@example.org".to_string()]);
}

#[test]
fn subscribers_commands_and_a_list_that_is_both_managed_and_a_file() {
    let n = newsletter(None, "");
    let add = n.run(&[
        "subscribers",
        "add",
        "ann@example.org",
        "--list",
        "local",
        "--name",
        "Ann",
        "--consent",
        "signed the form at the fair",
    ]);
    assert_eq!(code(&add), Some(0));
    let no_consent = n.run(&[
        "subscribers",
        "add",
        "bob@example.org",
        "--list",
        "local",
        "--consent",
        " ",
    ]);
    assert_eq!(code(&no_consent), Some(2));
    let unknown = n.run(&[
        "subscribers",
        "add",
        "bob@example.org",
        "--list",
        "readers",
        "--consent",
        "x",
    ]);
    assert_eq!(code(&unknown), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not a managed list"));
    n.write(
        "import.csv",
        "email,name,consent,city\ncora@example.org,Cora,newsletter box on our site 2019,Ghent\nnot-an-address,X,y,z\ndan@example.org,Dan,,Liège\nANN@example.org,Ann Again,phone call,Antwerp\n",
    );
    let import = n.run(&["subscribers", "import", "import.csv", "--list", "culture"]);
    assert_eq!(code(&import), Some(0));
    assert!(String::from_utf8_lossy(&import.stdout)
        .contains("imported 2 reader(s) into culture, skipped 2"));
    let err = String::from_utf8_lossy(&import.stderr).to_string();
    assert!(err.contains("import.csv:3:1:"), "{err}");
    assert!(
        err.contains("import.csv:4: dan@example.org has no consent attestation"),
        "{err}"
    );
    let readers = subscribers(&n, None);
    let ann = readers
        .iter()
        .find(|r| r["address"] == "ANN@example.org")
        .expect("ann");
    assert_eq!(ann["lists"], serde_json::json!(["culture", "local"]));
    assert_eq!(ann["consents"].as_array().unwrap().len(), 2);
    assert_eq!(subscribers(&n, Some("local")).len(), 1);
    let csv = n.run(&["subscribers", "export", "--list", "culture"]);
    let text = String::from_utf8_lossy(&csv.stdout).to_string();
    assert!(
        text.starts_with("email,name,lists,confirmed_at,consent\n"),
        "{text}"
    );
    assert!(text.contains("cora@example.org,Cora,culture,"), "{text}");
    let remove = n.run(&["subscribers", "remove", "ann@example.org"]);
    assert_eq!(code(&remove), Some(0));
    assert!(subscribers(&n, None)
        .iter()
        .all(|r| r["address"] != "ANN@example.org" || r["lists"] == serde_json::json!([])));
    let table = n.run(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        text.contains("LIST") && text.contains("CONFIRMED") && text.contains("culture"),
        "{text}"
    );

    let check = n.run(&["check"]);
    assert!(
        !String::from_utf8_lossy(&check.stdout).contains("local"),
        "managed lists need no file"
    );
    // An edition's own audience reads the managed list too.
    n.write(
        "editions/e1.md",
        "+++\ntitle = \"Night trains\"\ndate = 2026-11-20\naudience = [\"culture\"]\n+++\n\nHello.\n",
    );
    let send = n.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&send), Some(0));
    assert_eq!(n.recipients("sent"), vec!["cora@example.org".to_string()]);

    // A list is managed or a file, never both.
    n.write("subscribers/culture.csv", "email\nx@example.org\n");
    n.write(
        "editions/e3.md",
        "+++\ntitle = \"Three\"\ndate = 2026-11-21\naudience = [\"culture\"]\n+++\n\nHello.\n",
    );
    let check = n.run(&["check"]);
    assert_eq!(code(&check), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("brief.toml:"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let both = n.run(&["send", "--edition", "e3"]);
    assert_eq!(code(&both), Some(1));
    assert!(String::from_utf8_lossy(&both.stderr)
        .contains("is declared managed ([lists.culture] in brief.toml) and also has"));
}

#[test]
fn two_serve_processes_share_signups_on_one_postgresql_store() {
    let n = newsletter(None, "");
    let url = postgres().database();
    let config = n.read("brief.toml");
    n.write(
        "brief.toml",
        &format!("{config}\n[state]\nurl = \"{url}\"\n"),
    );
    let a = n.serve();
    let b = n.serve();
    // Both hosts give the one answer, whoever signs up where.
    let first = form_post(&a, "email=pat%40example.org&list=local&name=Pat");
    let again = form_post(&b, "email=pat%40example.org&list=local&name=Pat");
    assert_eq!((first.status, &first.body), (again.status, &again.body));
    // Two mailers look at the store; each mail goes out once.
    eventually("two confirmation mails", || {
        (outbox_mails(&n).len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(800));
    let mails = outbox_mails(&n);
    assert_eq!(mails.len(), 2, "{mails:?}");
    let confirm = path_of(&link(&mails[0].2, "https://news.example.org/brief/s/"));
    // Signed up on one host, confirmed on the other.
    let done = b.request("POST", &confirm, &[("Content-Type", FORM)], b"");
    assert_eq!(done.status, 200, "{}", done.body);
    let status = n.run(&["status", "--lists", "--json"]);
    let lists: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (n_(&lists[1], "confirmed"), n_(&lists[1], "pending")),
        (1, 1)
    );
    eventually("the welcome mail", || {
        outbox_mails(&n)
            .into_iter()
            .find(|(_, s, _)| s.starts_with("Welcome"))
    });
    let token = n.token("pat@example.org", "e1", false);
    let same = [
        ("Content-Type", FORM),
        ("Origin", "https://news.example.org"),
    ];
    let page = format!("/brief/p/{token}");
    let saved = a.request(
        "POST",
        &page,
        &same,
        b"action=save&list=local&list=culture&name=Pat+P",
    );
    assert_eq!(saved.status, 200);
    let shown = b.get(&page);
    assert!(shown.body.contains("value=\"Pat P\""), "{}", shown.body);
    assert_eq!(subscribers(&n, Some("culture")).len(), 1);

    // The send reads the managed list from PostgreSQL.
    assert_eq!(code(&n.run(&["send", "--edition", "e1"])), Some(0));
    let mut sent = n.recipients("sent");
    sent.sort();
    assert_eq!(
        sent,
        [
            "pat@example.org",
            "reader0000@example.org",
            "reader0001@example.org"
        ]
    );
    let data: serde_json::Value =
        serde_json::from_str(&b.request("POST", &page, &same, b"action=export").body).unwrap();
    assert_eq!(data["messages"][0]["state"], "sent");
    assert_eq!(data["consents"].as_array().unwrap().len(), 2);

    // Erased on one host; the other, and the next send, know only the hash.
    let reader = n.token("reader0001@example.org", "e1", false);
    let gone = a.request(
        "POST",
        &format!("/brief/p/{reader}"),
        &same,
        b"action=delete&confirm=yes",
    );
    assert_eq!(gone.status, 200);
    n.write(
        "editions/e2.md",
        "+++\ntitle = \"The second one\"\ndate = 2026-11-27\n+++\n\nMore news.\n",
    );
    assert_eq!(code(&n.run(&["send", "--edition", "e2"])), Some(0));
    let mut sent = n.recipients_of("e2", "sent");
    sent.sort();
    assert_eq!(sent, ["pat@example.org", "reader0000@example.org"]);
}

#[test]
fn a_broken_signup_template_is_located_by_check_and_stops_serve() {
    let n = newsletter(None, "");
    n.write(
        "templates/welcome.txt.hbs",
        "Welcome!\n{{#each lists}}\n- {{this.title}}\n",
    );
    let check = n.run(&["check"]);
    assert_eq!(code(&check), Some(1));
    let out = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(out.contains("templates/welcome.txt.hbs:"), "{out}");
    assert!(out.contains("template does not parse"), "{out}");
    let serve = n.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(code(&serve), Some(1));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("welcome.txt.hbs"));
    // A good override is a known template: no "not used" warning.
    n.write(
        "templates/welcome.txt.hbs",
        "Welcome, {{subscriber.email}}!\n{{preferences_url}}\n",
    );
    let check = n.run(&["check"]);
    assert!(!String::from_utf8_lossy(&check.stdout).contains("welcome.txt.hbs"));
}

#[test]
fn the_archive_links_to_the_signup_form_once_a_list_is_public() {
    let n = newsletter(None, "");
    let out = n.run(&["archive", "--all"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = n.read("site/index.html");
    assert!(
        index.contains("href=\"https://news.example.org/brief/subscribe\""),
        "{index}"
    );
}

#[test]
fn confirmation_mails_are_dkim_signed_like_editions() {
    let n = newsletter(None, "");
    std::fs::create_dir_all(n.path("keys")).unwrap();
    let pem = n.path("keys/brief.pem");
    let der = n.path("keys/public.der");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            pem.to_str().unwrap(),
        ],
        vec![
            "pkey",
            "-in",
            pem.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}");
    }
    let config = n.read("brief.toml");
    n.write(
        "brief.toml",
        &format!("{config}\n[dkim]\ndomain = \"news.example.org\"\nselector = \"brief\"\nkey_file = \"keys/brief.pem\"\n"),
    );
    let server = n.serve();
    assert_eq!(
        form_post(&server, "email=signed%40example.org&list=local").status,
        200
    );
    let file = eventually("the confirmation mail", || {
        std::fs::read_dir(n.path("outbox/reports"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
    });
    let raw = std::fs::read_to_string(&file).unwrap();
    assert!(raw.starts_with("DKIM-Signature:"), "{raw}");
    let out = std::process::Command::new("python3")
        .arg(support("dkim_verify.py"))
        .args([
            "brief._domainkey.news.example.org",
            "ed25519",
            der.to_str().unwrap(),
        ])
        .arg(&file)
        .output()
        .expect("run dkim_verify.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][file.to_str().unwrap()], true, "{v}");
}

#[test]
fn a_confirmation_the_relay_deferred_is_sent_by_the_next_server() {
    let smtp = Server::aiosmtpd(serde_json::json!({"defer_once": ["later@example.org"]}));
    let n = newsletter(Some(smtp.port), "max_pending_per_client = 2\n");
    let server = n.serve();
    assert_eq!(
        form_post(&server, "email=later%40example.org&list=local").status,
        200
    );
    eventually("the relay's deferral in the log", || {
        server.stderr().contains("not sent (try 1)").then_some(())
    });
    assert!(smtp.messages().is_empty());
    // Two more signups from this client: the second is over the client's bound.
    assert_eq!(
        form_post(&server, "email=one%40example.org&list=local").status,
        200
    );
    assert_eq!(
        form_post(&server, "email=two%40example.org&list=local").status,
        200
    );
    eventually("one more confirmation", || {
        (smtp.messages().len() == 1).then_some(())
    });
    drop(server);
    // A server started after the back-off (a minute) sends the deferred mail at once.
    let next = n.serve_at("2026-11-20T09:02:00Z");
    let got = eventually("the deferred confirmation", || {
        smtp.messages()
            .into_iter()
            .find(|(rcpt, _)| rcpt == "later@example.org")
    });
    assert!(got.1.contains("Confirm your subscription"));
    std::thread::sleep(Duration::from_millis(500));
    let counts = smtp.counts();
    assert_eq!(counts.get("later@example.org"), Some(&1));
    assert_eq!(counts.get("one@example.org"), Some(&1));
    assert_eq!(counts.get("two@example.org"), None);
    drop(next);
}

/// RFC 3834: a mail a machine sends because a form was filled in says so
/// (`Auto-Submitted: auto-generated`, so vacation responders and ticket systems do not
/// answer it), and carries no List-Unsubscribe (the reader is on no list yet).
#[test]
fn signup_mails_say_they_are_auto_generated() {
    let smtp = Server::aiosmtpd(serde_json::json!({}));
    let n = newsletter(Some(smtp.port), "");
    let server = n.serve();
    assert_eq!(
        form_post(&server, "email=auto%40example.org&list=local").status,
        200
    );
    let (_, confirm) = eventually("the confirmation mail", || {
        smtp.messages().into_iter().next()
    });
    let parsed = |raw: &str| {
        let m = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("a message");
        let auto = m.header_raw("Auto-Submitted").map(|v| v.trim().to_string());
        (auto, m.header_raw("List-Unsubscribe").is_some())
    };
    assert_eq!(
        parsed(&confirm),
        (Some("auto-generated".to_string()), false),
        "{confirm}"
    );
    let (_, _, body) = parse_mail(confirm.as_bytes());
    let confirm_path = path_of(&link(&body, "https://news.example.org/brief/s/"));
    let r = server.request("POST", &confirm_path, &[("Content-Type", FORM)], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, welcome) = eventually("the welcome mail", || {
        smtp.messages()
            .into_iter()
            .find(|(_, m)| m.contains("Welcome to"))
    });
    assert_eq!(
        parsed(&welcome),
        (Some("auto-generated".to_string()), false),
        "{welcome}"
    );
}

/// A confirmation link works for the signup it was sent for, not after it: once the
/// reader has left everything or deleted their data, the old link in their mailbox
/// (or in a mail they forwarded) changes nothing.
#[test]
fn a_used_confirmation_link_cannot_undo_an_unsubscribe_or_an_erasure() {
    let n = newsletter(None, "");
    let server = n.serve();
    assert_eq!(
        form_post(&server, "email=once%40example.org&list=local").status,
        200
    );
    let mails = eventually("the confirmation mail", || {
        let m = outbox_mails(&n);
        (!m.is_empty()).then_some(m)
    });
    let confirm = path_of(&link(&mails[0].2, "https://news.example.org/brief/s/"));
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        server.request("POST", path, headers, body)
    };
    let r = post(&confirm, &[("Content-Type", FORM)], b"");
    assert!(r.body.contains("You are subscribed"), "{}", r.body);
    assert_eq!(subscribers(&n, Some("local")).len(), 1);
    // Opened again, the link says so: no second Confirm button.
    let r = server.get(&confirm);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("You are subscribed"), "{}", r.body);
    assert!(!r.body.contains("<button"), "{}", r.body);
    let prefs = format!("/brief/p/{}", n.token("once@example.org", "e1", false));
    let same = [
        ("Content-Type", FORM),
        ("Origin", "https://news.example.org"),
        ("Sec-Fetch-Site", "same-origin"),
    ];

    // Unsubscribed from everything: the old link does not resubscribe.
    let r = post(&prefs, &same, b"action=unsubscribe");
    assert_eq!(r.status, 200);
    let r = post(&confirm, &[("Content-Type", FORM)], b"");
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.contains("This link was used already"), "{}", r.body);
    let r = server.get(&confirm);
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.contains("This link was used already"), "{}", r.body);
    assert!(!r.body.contains("<button"), "{}", r.body);
    let suppressed = n.suppressions();
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0]["address"], "once@example.org");

    // Deleted: the old link does not bring the reader (or their address) back.
    let r = post(&prefs, &same, b"action=delete&confirm=yes");
    assert!(r.body.contains("Your data is deleted"));
    let r = post(&confirm, &[("Content-Type", FORM)], b"");
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.contains("This link was used already"), "{}", r.body);
    assert!(subscribers(&n, None).is_empty());
    let kept = n.suppressions();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]["address"].as_str().unwrap().starts_with("sha256:"));
}

/// The preference centre's "Undo: resubscribe" works whether the page was opened at
/// `…/p/<token>` or at `…/p/<token>/` (a relative action resolved against the latter
/// pointed under `/p/`).
#[test]
fn the_undo_button_of_the_preference_centre_works_with_a_trailing_slash() {
    let n = newsletter(None, "");
    let server = n.serve();
    let same = [
        ("Content-Type", FORM),
        ("Origin", "https://news.example.org"),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    for (i, slash) in ["", "/"].iter().enumerate() {
        let email = format!("undo{i}@example.org");
        let page = format!("/brief/p/{}{slash}", n.token(&email, "e1", false));
        let r = server.request("POST", &page, &same, b"action=unsubscribe");
        assert!(r.body.contains("You are unsubscribed"), "{}", r.body);
        assert_eq!(n.suppressions().len(), 1);
        let action = r
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .expect("the undo form")
            .replace("&#x2F;", "/");
        // How a browser resolves the form's action against the page's URL.
        let base = page.rsplit_once('/').unwrap().0;
        let mut path: Vec<&str> = base.split('/').collect();
        for part in action.split('/') {
            match part {
                ".." => {
                    path.pop();
                }
                p => path.push(p),
            }
        }
        let target = if action.starts_with('/') {
            action.clone()
        } else {
            path.join("/")
        };
        let r = server.request("POST", &target, &same, b"");
        assert_eq!(r.status, 200, "{target} ({action} from {page}): {}", r.body);
        assert!(n.suppressions().is_empty(), "{target}: {}", r.body);
    }
}

/// A reader who deleted their data and later chooses a newsletter from the link in an
/// old message (their own act, like signing up and confirming) gets it: the page says
/// the address receives nothing now, and "Saved." is not followed by silence.
#[test]
fn an_erased_reader_who_chooses_a_newsletter_again_receives_it() {
    let n = newsletter(None, "");
    let server = n.serve();
    let page = format!("/brief/p/{}", n.token("zoe@example.org", "e1", false));
    let same = [
        ("Content-Type", FORM),
        ("Origin", "https://news.example.org"),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let post = |body: &[u8]| server.request("POST", &page, &same, body);
    assert!(post(b"action=save&list=local").body.contains("Saved."));
    assert!(post(b"action=delete&confirm=yes")
        .body
        .contains("Your data is deleted"));
    assert!(subscribers(&n, None).is_empty());
    let shown = server.get(&page);
    assert!(
        shown.body.contains("receives nothing from"),
        "{}",
        shown.body
    );
    assert!(post(b"action=save&list=local").body.contains("Saved."));
    assert_eq!(subscribers(&n, Some("local")).len(), 1);
    assert!(n.suppressions().is_empty(), "{:?}", n.suppressions());
    drop(server);
    assert_eq!(code(&n.run(&["send", "--edition", "e1"])), Some(0));
    assert!(n
        .recipients_of("e1", "sent")
        .contains(&"zoe@example.org".to_string()));
}

/// A quoted local part (`"a b"@example.org`) is a valid address that no confirmation
/// mail can be built for: the form and the API refuse it at once, rather than
/// answering "check your inbox" for a mail that fails six times and never comes.
#[test]
fn an_address_the_confirmation_cannot_reach_is_refused_in_the_form() {
    let smtp = Server::aiosmtpd(serde_json::json!({}));
    let n = newsletter(Some(smtp.port), "");
    let server = n.serve();
    for email in ["\"a b\"@example.org", "\"a> NOTIFY=NEVER\"@example.org"] {
        let r = form_post(&server, &format!("email={}&list=local", enc(email)));
        assert_eq!(r.status, 400, "{email}: {}", r.body);
        assert!(r.body.contains("class=\"error\""), "{email}");
        let api = server.request(
            "POST",
            "/brief/api/subscribe",
            &[("Content-Type", "application/json")],
            serde_json::json!({"email": email, "lists": ["local"]})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(api.status, 400, "{email}: {}", api.body);
    }
    // A plain address still signs up, and its mail arrives.
    assert_eq!(
        form_post(&server, "email=plain%40example.org&list=local").status,
        200
    );
    eventually("the confirmation mail", || {
        (smtp.messages().len() == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!server.stderr().contains("not sent"), "{}", server.stderr());
}
