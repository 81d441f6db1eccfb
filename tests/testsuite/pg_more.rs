//! More of the PostgreSQL store against real clusters: TLS to the database with a
//! private CA made at test time, two `brief dispatch` runs joining one send,
//! `rate_per_second` held across senders (the sink's arrival times), and a database
//! that stays away past the bounded wait (exit 3, nothing lost).

use crate::harness::*;
use crate::pg::stderr;
use crate::tls::Ca;
use std::path::PathBuf;

/// A cluster serving TLS with a certificate for 127.0.0.1 signed by `ca`, accepting
/// TCP connections over TLS only (so a send that works went over TLS); `other` is a CA
/// that signed nothing of it. One per test binary.
struct TlsCluster {
    cluster: Postgres,
    ca: Ca,
    other: Ca,
}

fn tls_cluster() -> &'static TlsCluster {
    static CLUSTER: std::sync::OnceLock<TlsCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let ca = Ca::new("brief test database CA");
        let (cert, key) = ca.issue("db", "IP:127.0.0.1");
        TlsCluster {
            cluster: Postgres::start_tls(&cert, &key),
            ca,
            other: Ca::new("another CA"),
        }
    })
}

const PASSWORD: &str = "pw-7f3c9a-never-printed";

/// A newsletter of 3 readers on `url` (with a password from the environment), and
/// `brief send --edition e1`'s output.
fn send_over(url: &str, sink: &Server) -> (Newsletter, std::process::Output) {
    let nl = Newsletter::generated(3, Some(sink.port));
    let mut config = nl.read("brief.toml");
    config.push_str(&format!(
        "\n[state]\nurl = \"{url}\"\npassword_env = \"BRIEF_TEST_DB_PASSWORD\"\n"
    ));
    nl.write("brief.toml", &config);
    let out = nl
        .command(&["send", "--edition", "e1"])
        .env("BRIEF_TEST_DB_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    (nl, out)
}

/// `url` with `sslmode` and `sslrootcert`.
fn with_tls(url: &str, mode: &str, root: Option<PathBuf>) -> String {
    let root = root.map_or_else(String::new, |r| format!("&sslrootcert={}", r.display()));
    format!("{url}?sslmode={mode}{root}")
}

/// A refused connection: exit 1, a message naming the database and `why`, never the
/// password, and nothing sent.
fn assert_refused(out: &std::process::Output, sink: &Server, why: &str) {
    let err = stderr(out);
    eprintln!("{err}");
    assert_eq!(code(out), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the database postgres://brief@"),
        "{err}"
    );
    assert!(err.contains(why), "{why}: {err}");
    assert!(!err.contains(PASSWORD), "the password is printed: {err}");
    assert!(sink.messages().is_empty(), "nothing is sent");
}

#[test]
fn a_send_over_verify_full_with_a_private_ca_delivers_every_reader() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let database = tls.cluster.database();
    let url = with_tls(&database, "verify-full", Some(tls.ca.cert()));
    let (nl, out) = send_over(&url, &sink);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    assert_eq!(counts.len(), 3);
    assert_eq!(
        tls.cluster.sql(
            &database,
            "SELECT count(*) FROM journal WHERE state = 'sent'"
        ),
        "3",
        "the journal is in the database reached over TLS"
    );
}

#[test]
fn the_tls_cluster_refuses_a_connection_in_clear() {
    // What makes the test above prove TLS: the same database without sslmode.
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let (_, out) = send_over(&tls.cluster.database(), &sink);
    assert_refused(&out, &sink, "no encryption");
}

#[test]
fn a_database_certificate_not_signed_by_sslrootcert_is_refused() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let url = with_tls(
        &tls.cluster.database(),
        "verify-full",
        Some(tls.other.cert()),
    );
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "certificate");
    assert!(stderr(&out).contains("UnknownIssuer"), "{}", stderr(&out));
}

#[test]
fn a_database_certificate_for_another_host_name_is_refused_under_verify_full() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    // The certificate names 127.0.0.1; `localhost` reaches the same server.
    let url = tls.cluster.database().replace("@127.0.0.1:", "@localhost:");
    let url = with_tls(&url, "verify-full", Some(tls.ca.cert()));
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "certificate");
    assert!(
        stderr(&out).contains("not valid for name \"localhost\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sslmode_require_against_a_server_without_tls_is_refused() {
    let sink = Server::smtp_sink(&[]);
    let url = with_tls(&postgres().database(), "require", None);
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "TLS");
}
