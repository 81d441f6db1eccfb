//! STARTTLS and implicit TLS against a real server: certificates made with `openssl`
//! at test time, aiosmtpd speaking TLS (`tests/support/smtp_server.py`), the real
//! `brief` binary verifying the relay against `smtp.ca_file` or the system's roots.

use crate::harness::{self, code, n, Newsletter, Server};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority and the certificates it signs, as PEM files in a temp dir.
pub(crate) struct Ca {
    dir: tempfile::TempDir,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir }
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` (e.g. `DNS:localhost,IP:127.0.0.1`) signed by
    /// this CA: (certificate, key).
    pub(crate) fn issue(&self, stem: &str, names: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        std::fs::write(
            d.join(format!("{stem}.ext")),
            format!(
                "subjectAltName={names}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=relay",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{stem}.ext"),
                "-out",
                &pem,
            ],
        );
        (d.join(pem), d.join(key))
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install the Debian package `openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

const LOCAL_NAMES: &str = "DNS:localhost,IP:127.0.0.1";

/// aiosmtpd with TLS (STARTTLS, or implicit) using `cert`, plus other `rules`.
fn tls_server(
    (cert, key): &(PathBuf, PathBuf),
    implicit: bool,
    mut rules: serde_json::Value,
) -> Server {
    rules["tls"] = json!({"cert": cert, "key": key, "implicit": implicit});
    Server::aiosmtpd(rules)
}

/// Copies the CA certificate into the newsletter folder and names it in `smtp.ca_file`
/// (relative, so resolution against the folder is exercised too).
fn trust(nl: &Newsletter, ca: &Ca) {
    std::fs::create_dir_all(nl.root().join("certs")).unwrap();
    std::fs::copy(ca.cert(), nl.root().join("certs/relay-ca.pem")).unwrap();
    nl.set_smtp(&[("ca_file", "\"certs/relay-ca.pem\"")]);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A session failure: exit 1, every reader still pending, none in doubt, nothing
/// received; returns stderr.
fn assert_session_failure(nl: &Newsletter, server: &Server, out: &std::process::Output) -> String {
    assert_eq!(code(out), Some(1), "{}", stderr(out));
    let s = nl.status(false);
    assert_eq!(
        (n(&s, "pending"), n(&s, "sent"), n(&s, "in_doubt")),
        (nl.readers.len() as u64, 0, 0),
        "{s}"
    );
    assert!(server.messages().is_empty());
    stderr(out)
}

#[test]
fn starttls_with_auth_delivers_each_reader_once_over_tls() {
    let ca = Ca::new("Relay Test CA");
    let server = tls_server(
        &ca.issue("relay", LOCAL_NAMES),
        false,
        json!({"auth": {"sender": "s3cret"}}),
    );
    let nl = Newsletter::generated(6, Some(server.port));
    nl.set_smtp(&[
        ("host", "\"localhost\""),
        ("tls", "\"starttls\""),
        ("username", "\"sender\""),
        ("password_env", "\"TEST_SMTP_PASSWORD\""),
    ]);
    trust(&nl, &ca);

    let check = nl.run(&["check"]);
    assert!(
        !harness::stdout(&check).contains("ca_file"),
        "{}",
        harness::stdout(&check)
    );

    let out = nl
        .command(&["send", "--edition", "e1"])
        .env("TEST_SMTP_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let messages = server.messages();
    let counts = server.counts();
    assert_eq!(counts.len(), nl.readers.len(), "{counts:?}");
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    for (rcpt, text) in &messages {
        let tls = harness::header(text, "X-TLS").unwrap_or_default();
        assert!(
            tls.starts_with("TLSv1."),
            "{rcpt} was not sent over TLS: {tls:?}"
        );
    }
    assert_eq!(n(&nl.status(false), "sent"), nl.readers.len() as u64);
}

#[test]
fn implicit_tls_delivers_the_edition_and_the_report() {
    let ca = Ca::new("Relay Test CA");
    let server = tls_server(&ca.issue("relay", LOCAL_NAMES), true, json!({}));
    let nl = Newsletter::generated_with(4, Some(server.port), "report = true");
    nl.set_smtp(&[("tls", "\"tls\"")]);
    trust(&nl, &ca);

    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let counts = server.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    // The report to the editors goes through the same settings (src/report.rs).
    for editor in ["edith@example.org", "ezra@example.org"] {
        assert_eq!(counts.get(editor), Some(&1), "{editor}: {counts:?}");
    }
    for (rcpt, text) in server.messages() {
        let tls = harness::header(&text, "X-TLS").unwrap_or_default();
        assert!(
            tls.starts_with("TLSv1."),
            "{rcpt} was not sent over TLS: {tls:?}"
        );
    }
}

#[test]
fn a_certificate_not_signed_by_ca_file_is_a_session_failure() {
    let trusted = Ca::new("Relay Test CA");
    let other = Ca::new("Some Other CA");
    for implicit in [false, true] {
        let server = tls_server(&other.issue("relay", LOCAL_NAMES), implicit, json!({}));
        let nl = Newsletter::generated(3, Some(server.port));
        nl.set_smtp(&[("tls", if implicit { "\"tls\"" } else { "\"starttls\"" })]);
        trust(&nl, &trusted);
        let out = nl.run(&["send", "--edition", "e1"]);
        let err = assert_session_failure(&nl, &server, &out);
        assert!(
            err.contains("certificate is not signed by a CA in smtp.ca_file")
                && err.contains("relay-ca.pem"),
            "{err}"
        );
    }
}

#[test]
fn without_ca_file_a_private_ca_is_not_trusted() {
    let ca = Ca::new("Relay Test CA");
    let server = tls_server(&ca.issue("relay", LOCAL_NAMES), false, json!({}));
    let nl = Newsletter::generated(3, Some(server.port));
    nl.set_smtp(&[("tls", "\"starttls\"")]);
    let out = nl.run(&["send", "--edition", "e1"]);
    let err = assert_session_failure(&nl, &server, &out);
    assert!(
        err.contains("not signed by a CA this system trusts") && err.contains("smtp.ca_file"),
        "{err}"
    );
}

#[test]
fn a_certificate_for_another_name_is_a_session_failure() {
    let ca = Ca::new("Relay Test CA");
    let server = tls_server(
        &ca.issue("elsewhere", "DNS:relay.example.org"),
        false,
        json!({}),
    );
    let nl = Newsletter::generated(3, Some(server.port));
    nl.set_smtp(&[("tls", "\"starttls\"")]);
    trust(&nl, &ca);
    let out = nl.run(&["send", "--edition", "e1"]);
    let err = assert_session_failure(&nl, &server, &out);
    assert!(
        err.contains("not valid for name") && err.contains("relay.example.org"),
        "{err}"
    );
}

#[test]
fn a_relay_without_starttls_is_a_session_failure_never_plain_text() {
    let server = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(3, Some(server.port));
    nl.set_smtp(&[("tls", "\"starttls\"")]);
    let out = nl.run(&["send", "--edition", "e1"]);
    let err = assert_session_failure(&nl, &server, &out);
    assert!(err.contains("does not offer STARTTLS"), "{err}");
}

#[test]
fn a_bad_ca_file_is_an_error_before_any_connection_and_in_check() {
    let ca = Ca::new("Relay Test CA");
    // Nothing listens on this port: had brief tried to connect, it would say so.
    let nl = Newsletter::generated(3, Some(harness::free_port()));
    nl.set_smtp(&[("tls", "\"starttls\"")]);
    trust(&nl, &ca);
    let ca_file = nl.root().join("certs/relay-ca.pem");
    let der_garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    for (contents, problem) in [
        (None, "cannot read smtp.ca_file"),
        (Some("this is not a certificate\n"), "holds no certificate"),
        (Some(der_garbage), "not a usable CA certificate"),
    ] {
        match contents {
            None => std::fs::remove_file(&ca_file).unwrap(),
            Some(text) => std::fs::write(&ca_file, text).unwrap(),
        }
        let check = nl.run(&["check"]);
        assert_eq!(code(&check), Some(1));
        let report = harness::stdout(&check);
        let line = report
            .lines()
            .find(|l| l.contains(problem))
            .unwrap_or_else(|| panic!("`brief check` does not say {problem:?}: {report}"));
        assert!(
            line.starts_with("brief.toml:") && line.contains("relay-ca.pem"),
            "{line}"
        );

        let out = nl.run(&["send", "--edition", "e1"]);
        assert_eq!(code(&out), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(problem) && !err.contains("cannot connect"),
            "{err}"
        );
        let s = nl.status(false);
        assert_eq!((n(&s, "sent"), n(&s, "in_doubt")), (0, 0), "{s}");
    }
}

#[test]
fn check_warns_that_ca_file_is_unused_without_tls() {
    let ca = Ca::new("Relay Test CA");
    let nl = Newsletter::generated(3, Some(harness::free_port()));
    trust(&nl, &ca);
    let check = nl.run(&["check"]);
    assert_eq!(code(&check), Some(0));
    let report = harness::stdout(&check);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("brief.toml:")
                && l.contains("warning: `smtp.ca_file` is not used")),
        "{report}"
    );
}
