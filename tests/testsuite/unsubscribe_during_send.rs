//! An unsubscribe that arrives while a long send is running stops the mail that reader
//! would still have received: `brief serve` and `brief send` share the state store, and
//! the sender checks the suppression list right before each message.

use crate::harness::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_one_click_unsubscribe_during_a_running_send_stops_later_mail() {
    // One connection, and a one-second pause before every DATA reply: six readers take
    // six seconds or more, time enough to unsubscribe the last one in the middle.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(6, Some(sink.port), "concurrency = 1");
    let last = nl.readers.last().unwrap().clone();

    let serve = nl.serve();

    let mut send = Killed(
        nl.command(&["send", "--edition", "e1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start brief send"),
    );
    wait_until("the first delivery", Duration::from_secs(30), || {
        !sink.messages().is_empty()
    });

    // The link the last reader's message carries (same secret, same newsletter).
    let token = nl.token(&last, "e1", false);
    let answer = serve.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(answer.status, 200);
    assert!(
        !sink.counts().contains_key(&last),
        "the last reader was mailed before the test could unsubscribe them: the sink is too fast"
    );

    let start = Instant::now();
    let status = loop {
        if let Some(status) = send.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "brief send did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));

    let counts = sink.counts();
    assert_eq!(
        counts.get(&last),
        None,
        "mail after the unsubscribe: {counts:?}"
    );
    for reader in &nl.readers[..nl.readers.len() - 1] {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    let s = nl.status(false);
    assert_eq!((n(&s, "sent"), n(&s, "suppressed")), (5, 1));
}
