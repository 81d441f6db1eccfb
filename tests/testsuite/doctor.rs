//! `brief doctor` against a real DNS server: `support/dns_server.py` (dnslib),
//! started once for this test binary on a loopback port with one zone holding a
//! domain per case. The RSA key is made by openssl and its DNS record written from
//! openssl's public key, so brief's own key code is not checking itself.

use crate::harness::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// RFC 8463's example Ed25519 key, and its public half.
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

struct Dns {
    port: u16,
    /// The RSA private key whose public half the zone publishes.
    rsa_pem: PathBuf,
    _dir: tempfile::TempDir,
    _child: Child,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A TXT record of `text` in strings of at most 255 bytes.
fn txt(name: &str, text: &str) -> String {
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect();
    format!("{name}. 60 IN TXT {}\n", strings.join(" "))
}

/// The mail setup of one domain in the zone: SPF, key, DMARC and MX, each replaceable.
fn domain(
    name: &str,
    spf: Option<&str>,
    key: Option<&str>,
    dmarc: Option<&str>,
    mx: bool,
) -> String {
    let mut z = String::new();
    z += &txt(name, "google-site-verification=abc");
    if let Some(spf) = spf {
        z += &txt(name, spf);
    }
    if let Some(key) = key {
        z += &txt(&format!("brief._domainkey.{name}"), key);
    }
    if let Some(dmarc) = dmarc {
        z += &txt(&format!("_dmarc.{name}"), dmarc);
    }
    if mx {
        z += &format!("{name}. 60 IN MX 10 mx.{name}.\nmx.{name}. 60 IN A 192.0.2.25\n");
    }
    z
}

fn dns() -> &'static Dns {
    static DNS: OnceLock<Dns> = OnceLock::new();
    DNS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let rsa_pem = dir.path().join("rsa.pem");
        let rsa_s = rsa_pem.to_str().unwrap();
        openssl(&["genrsa", "-traditional", "-out", rsa_s, "2048"]);
        let der = openssl(&["pkey", "-in", rsa_s, "-pubout", "-outform", "DER"]);
        let rsa_record = format!("v=DKIM1; k=rsa; p={}", b64(&der));
        let ed_record = format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}");
        let spf = Some("v=spf1 mx ip4:192.0.2.0/28 -all");
        const REJECT: &str = "v=DMARC1; p=reject; rua=mailto:postmaster@example.test";
        let reject = Some(REJECT);
        let rsa = Some(rsa_record.as_str());
        let mut zone = String::from("relay.test. 60 IN A 192.0.2.10\n");
        // good.test: the From domain is news.good.test; DMARC comes from good.test.
        zone += &domain("news.good.test", spf, rsa, None, true);
        zone += &txt("_dmarc.good.test", REJECT);
        zone += &domain("nospf.test", None, rsa, reject, true);
        zone += &domain("narrow.test", Some("v=spf1 ip4:198.51.100.0/24 -all"), rsa, reject, true);
        zone += &domain("open.test", Some("v=spf1 +all"), rsa, reject, true);
        let many: String = (1..=11).map(|i| format!(" a:h{i}.many.test")).collect();
        zone += &domain("many.test", Some(&format!("v=spf1{many} ip4:192.0.2.10 -all")), rsa, reject, true);
        zone += &domain("mismatch.test", spf, Some(&ed_record), reject, true);
        zone += &domain("nodmarc.test", spf, rsa, None, true);
        zone += &domain("pnone.test", spf, Some(&ed_record), Some("v=DMARC1; p=none; rua=mailto:postmaster@pnone.test"), true);
        zone += &domain("misaligned.test", spf, None, reject, true);
        zone += &domain("mailer.test", None, rsa, None, false);
        zone += &domain("nomx.test", spf, rsa, reject, false);
        let zone_file = dir.path().join("zone");
        std::fs::write(&zone_file, zone).unwrap();

        let port = free_port();
        let script = support("dns_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&zone_file)
            // The server exits when this pipe closes, i.e. with the test binary.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/support/dns_server.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.trim() == "READY" => {}
            other => panic!(
                "the DNS server did not start ({other:?}): it needs python3 with dnslib (`pip install dnslib`; scripts/test.sh does)"
            ),
        }
        Dns { port, rsa_pem, _dir: dir, _child: child }
    })
}

fn b64(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// A newsletter sending as brief@`from_domain` through relay.test, signing with the
/// openssl RSA key for `dkim_domain` (no `[dkim]` when `None`).
fn newsletter(from_domain: &str, dkim_domain: Option<&str>) -> Newsletter {
    let nl = Newsletter::generated(2, Some(2525));
    nl.set_smtp(&[("host", "\"relay.test\"")]);
    let path = nl.root().join("brief.toml");
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("brief@news.example.org", &format!("brief@{from_domain}"));
    if let Some(d) = dkim_domain {
        std::fs::copy(&dns().rsa_pem, nl.root().join("brief.pem")).unwrap();
        text += &format!(
            "\n[dkim]\ndomain = \"{d}\"\nselector = \"brief\"\nkey_file = \"brief.pem\"\n"
        );
    }
    std::fs::write(&path, text).unwrap();
    nl
}

fn doctor(nl: &Newsletter, extra: &[&str]) -> (Output, Vec<Value>) {
    let ns = format!("127.0.0.1:{}", dns().port);
    let mut args = vec!["doctor", "--json", "--nameserver", &ns];
    args.extend_from_slice(extra);
    let o = nl.run(&args);
    let findings: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (o, findings)
}

/// The findings of one check, as (status, message, record).
fn of(findings: &[Value], check: &str) -> Vec<(String, String, Option<String>)> {
    findings
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| {
            (
                f["status"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
                f["record"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn one(findings: &[Value], check: &str) -> (String, String, Option<String>) {
    let mut all = of(findings, check);
    assert_eq!(all.len(), 1, "{check}: {findings:?}");
    all.remove(0)
}

fn dkim_record_of(pem: &Path) -> String {
    let der = openssl(&[
        "pkey",
        "-in",
        pem.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    format!("v=DKIM1; k=rsa; p={}", b64(&der))
}

#[test]
fn a_good_setup_passes_every_check() {
    let nl = newsletter("news.good.test", Some("news.good.test"));
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(0), "{f:?}");
    for check in ["spf", "dkim", "dmarc", "mx"] {
        let (status, message, record) = one(&f, check);
        assert_eq!(status, "ok", "{check}: {message}");
        assert_eq!(record, None);
    }
    assert!(one(&f, "spf")
        .1
        .contains("lets the relay pass (192.0.2.10)"));
    assert!(one(&f, "dmarc").1.starts_with("_dmarc.good.test:"), "{f:?}");
    assert!(one(&f, "mx").1.contains("MX 10 mx.news.good.test"));

    // The text output: one line per finding and a summary.
    let ns = format!("127.0.0.1:{}", dns().port);
    let o = nl.run(&["doctor", "--nameserver", &ns]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("SPF: ok: news.good.test: \"v=spf1 mx ip4:192.0.2.0/28 -all\""),
        "{out}"
    );
    assert!(out.ends_with("doctor: 0 error(s), 0 warning(s)\n"), "{out}");
}

#[test]
fn a_missing_spf_record_is_an_error_with_the_record_to_publish() {
    let nl = newsletter("nospf.test", Some("nospf.test"));
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, record) = one(&f, "spf");
    assert_eq!(status, "error");
    assert!(
        message.contains("nospf.test (the return-path domain) has no SPF record"),
        "{message}"
    );
    assert_eq!(
        record.as_deref(),
        Some("nospf.test. 3600 IN TXT \"v=spf1 ip4:192.0.2.10 ~all\"")
    );
    assert_eq!(one(&f, "dkim").0, "ok");
}

#[test]
fn spf_records_that_cannot_pass_are_errors() {
    // The relay's address is not covered and the record ends in -all.
    let (o, f) = doctor(&newsletter("narrow.test", Some("narrow.test")), &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, record) = one(&f, "spf");
    assert_eq!(status, "error");
    assert!(
        message.contains("gives the relay relay.test (192.0.2.10) `fail`"),
        "{message}"
    );
    assert_eq!(
        record.as_deref(),
        Some("narrow.test. 3600 IN TXT \"v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.10 -all\"")
    );

    let (_, f) = doctor(&newsletter("open.test", Some("open.test")), &[]);
    let (status, message, _) = one(&f, "spf");
    assert_eq!(status, "error");
    assert!(message.contains("`+all`"), "{message}");

    let (_, f) = doctor(&newsletter("many.test", Some("many.test")), &[]);
    let (status, message, _) = one(&f, "spf");
    assert_eq!(status, "error");
    assert!(message.contains("needs 11 DNS lookups"), "{message}");
}

#[test]
fn a_published_key_that_is_not_the_configured_one_is_a_mismatch() {
    let nl = newsletter("mismatch.test", Some("mismatch.test"));
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, record) = one(&f, "dkim");
    assert_eq!(status, "error");
    assert!(
        message.contains("brief._domainkey.mismatch.test publishes a different key"),
        "{message}"
    );
    // The record to publish is the openssl public key of the configured private key.
    let wanted = dkim_record_of(&dns().rsa_pem);
    let record = record.unwrap();
    let published: String = record
        .strip_prefix("brief._domainkey.mismatch.test. 3600 IN TXT ")
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    assert_eq!(published, wanted);

    // The same zone entry with its own (Ed25519) key configured matches.
    std::fs::write(nl.root().join("brief.pem"), ED25519_PEM).unwrap();
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(0), "{f:?}");
    assert_eq!(one(&f, "dkim").0, "ok");
}

#[test]
fn a_missing_dmarc_record_is_an_error() {
    let (o, f) = doctor(&newsletter("nodmarc.test", Some("nodmarc.test")), &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, record) = one(&f, "dmarc");
    assert_eq!(status, "error");
    assert!(message.contains("has a DMARC record"), "{message}");
    assert_eq!(
        record.as_deref(),
        Some("_dmarc.nodmarc.test. 3600 IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@nodmarc.test\"")
    );
}

#[test]
fn policy_none_is_a_warning_with_a_stricter_record() {
    let nl = newsletter("pnone.test", Some("pnone.test"));
    std::fs::write(nl.root().join("brief.pem"), ED25519_PEM).unwrap();
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(0), "{f:?}");
    let dmarc = of(&f, "dmarc");
    let (status, message, record) = &dmarc[0];
    assert_eq!(status, "warning");
    assert!(message.contains("policy `none`"), "{message}");
    assert_eq!(
        record.as_deref(),
        Some("_dmarc.pnone.test. 3600 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@pnone.test\"")
    );
    assert_eq!(dmarc[1].0, "ok", "{dmarc:?}");
}

#[test]
fn a_dkim_domain_not_aligned_with_from_is_reported_with_the_key_to_publish() {
    // Signs as mailer.test, which publishes the key, while From is misaligned.test.
    let nl = newsletter("misaligned.test", Some("mailer.test"));
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(one(&f, "dkim").0, "ok", "{f:?}");
    let (status, message, record) = one(&f, "dmarc");
    assert_eq!(status, "warning", "{message}");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        message.contains("the DKIM domain mailer.test is not aligned with From misaligned.test"),
        "{message}"
    );
    let record = record.unwrap();
    assert!(
        record.starts_with("brief._domainkey.misaligned.test. 3600 IN TXT \"v=DKIM1; k=rsa; p="),
        "{record}"
    );
}

#[test]
fn no_mx_for_the_return_path_domain_is_an_error() {
    let (o, f) = doctor(&newsletter("nomx.test", Some("nomx.test")), &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, record) = one(&f, "mx");
    assert_eq!(status, "error");
    assert!(
        message.contains("no MX record and no address: bounces cannot be delivered"),
        "{message}"
    );
    assert_eq!(
        record.as_deref(),
        Some("nomx.test. 3600 IN MX 10 mail.nomx.test.")
    );
}

#[test]
fn online_checks_the_one_click_post_without_unsubscribing_anyone() {
    let nl = newsletter("news.good.test", Some("news.good.test"));
    let port = free_port();
    let path = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "https://news.example.org/brief",
        &format!("http://127.0.0.1:{port}/brief"),
    );
    std::fs::write(&path, text).unwrap();
    let _server = nl.serve_on(&format!("127.0.0.1:{port}"));

    let (o, f) = doctor(&nl, &["--online"]);
    let one_click = of(&f, "one-click");
    assert_eq!(one_click.len(), 2, "{one_click:?}");
    // An http:// base_url is refused by mailbox providers, so it is an error...
    assert_eq!(one_click[0].0, "error");
    assert!(one_click[0].1.contains("is not https://"), "{one_click:?}");
    assert_eq!(o.status.code(), Some(1));
    // ...but the endpoint itself honours RFC 8058.
    assert_eq!(one_click[1].0, "ok", "{one_click:?}");
    assert!(one_click[1]
        .1
        .contains("with List-Unsubscribe=One-Click answers 200"));
    let o = nl.run(&["suppressions", "--json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // A server with another secret does not know doctor's link.
    let o = nl
        .command(&[
            "doctor",
            "--json",
            "--online",
            "--nameserver",
            &format!("127.0.0.1:{}", dns().port),
        ])
        .env("BRIEF_SECRET", OLD_SECRET)
        .output()
        .unwrap();
    let f: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let one_click = of(&f, "one-click");
    assert!(
        one_click[1]
            .1
            .contains("404: the server does not accept brief's links"),
        "{one_click:?}"
    );
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `support/tls_proxy.py` on `port`, terminating TLS for `brief serve` on `upstream`.
fn tls_proxy(port: u16, upstream: u16, cert: &Path, key: &Path) -> Killed {
    let mut child = Command::new("python3")
        .arg(support("tls_proxy.py"))
        .arg(port.to_string())
        .arg(upstream.to_string())
        .arg(cert)
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3 support/tls_proxy.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "the TLS proxy did not start");
    Killed(child)
}

#[test]
fn online_over_https_passes_through_a_tls_proxy_it_trusts() {
    let nl = newsletter("news.good.test", Some("news.good.test"));
    let (proxy_port, serve_port) = (free_port(), free_port());
    let path = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "https://news.example.org/brief",
        &format!("https://127.0.0.1:{proxy_port}/brief"),
    );
    std::fs::write(&path, text).unwrap();
    let _server = nl.serve_on(&format!("127.0.0.1:{serve_port}"));
    let ca = crate::tls::Ca::new("brief doctor test CA");
    let (cert, key) = ca.issue("proxy", "IP:127.0.0.1");
    let _proxy = tls_proxy(proxy_port, serve_port, &cert, &key);
    let ns = format!("127.0.0.1:{}", dns().port);
    let args = ["doctor", "--json", "--online", "--nameserver", &ns];

    let o = nl
        .command(&args)
        .env("SSL_CERT_FILE", ca.cert())
        .output()
        .unwrap();
    let f: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{f:?}");
    let one_click = of(&f, "one-click");
    assert_eq!(one_click.len(), 1, "{one_click:?}");
    assert_eq!(one_click[0].0, "ok", "{one_click:?}");
    assert_eq!(nl.suppressions().len(), 0);

    // A certificate the client does not trust is an error, not a silent pass.
    let o = nl
        .command(&args)
        .env("SSL_CERT_FILE", nl.path("brief.toml"))
        .output()
        .unwrap();
    let f: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let one_click = of(&f, "one-click");
    assert!(
        one_click[0].1.contains("TLS with 127.0.0.1:"),
        "{one_click:?}"
    );
}

#[test]
fn spf_and_mx_are_those_of_the_return_path_domain() {
    // From news.good.test, bounces to nomx.test: its SPF passes, it has no MX, and
    // DMARC passes on the aligned DKIM signature alone.
    let nl = newsletter("news.good.test", Some("news.good.test"));
    let path = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "report = false\n",
        "report = false\nreturn_path = \"bounces@nomx.test\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(1));
    let (status, message, _) = one(&f, "spf");
    assert_eq!(status, "ok", "{message}");
    assert!(message.starts_with("nomx.test: "), "{message}");
    let (status, message, _) = one(&f, "mx");
    assert_eq!(status, "error");
    assert!(
        message.starts_with("nomx.test (the return-path domain) has no MX"),
        "{message}"
    );
    let (status, message, _) = one(&f, "dmarc");
    assert_eq!(status, "ok", "{message}");
    assert!(
        message.contains("SPF is not (return path nomx.test), so DMARC passes on DKIM"),
        "{message}"
    );
}

#[test]
fn every_dkim_key_is_checked() {
    // A second key (Ed25519, selector ed) whose record is missing.
    let nl = newsletter("news.good.test", Some("news.good.test"));
    std::fs::write(nl.root().join("ed.pem"), ED25519_PEM).unwrap();
    let path = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[[dkim.keys]]\nselector = \"ed\"\nkey_file = \"ed.pem\"\n";
    std::fs::write(&path, text).unwrap();
    let (o, f) = doctor(&nl, &[]);
    assert_eq!(o.status.code(), Some(1));
    let dkim = of(&f, "dkim");
    assert_eq!(dkim.len(), 2, "{dkim:?}");
    assert_eq!(dkim[0].0, "ok", "{dkim:?}");
    assert_eq!(dkim[1].0, "error");
    assert!(dkim[1]
        .1
        .starts_with("ed._domainkey.news.good.test has no DKIM key record"));
    assert_eq!(
        dkim[1].2.as_deref(),
        Some(format!("ed._domainkey.news.good.test. 3600 IN TXT \"v=DKIM1; k=ed25519; p={ED25519_PUBLIC}\"").as_str())
    );
}
