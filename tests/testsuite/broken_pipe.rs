//! Every command that prints ends quietly with exit 0 when its reader has gone
//! (`brief suppressions | head -1`), like ripgrep: no panic, no error.

use crate::harness::Newsletter;

/// Runs brief with stdout on a pipe whose reading end is already closed, so the
/// first write fails with EPIPE.
fn into_closed_pipe(nl: &Newsletter, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    nl.command(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run brief")
}

#[test]
fn printing_commands_exit_0_into_a_closed_pipe() {
    let nl = Newsletter::generated(3, None);
    let added = nl.run(&["unsubscribe", "gone@example.org"]);
    assert_eq!(added.status.code(), Some(0), "{added:?}");
    for args in [
        &["suppressions"][..],
        &["suppressions", "--csv"],
        &["suppressions", "--json"],
        &["status"],
        &["check"],
    ] {
        let out = into_closed_pipe(&nl, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "brief {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "brief {args:?}: {stderr}");
    }
}
