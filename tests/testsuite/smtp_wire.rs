//! The SMTP client on the wire: a scripted relay in the test (a real socket; it plays
//! the faults and attacks no well-behaved server does) and Postfix's smtp-sink, which
//! records the MAIL and RCPT parameters brief sends.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the scripted relay behaves.
#[derive(Clone, Default)]
struct Script {
    /// EHLO keywords offered.
    extensions: Vec<&'static str>,
    /// Sent right after `220` to STARTTLS, in the same write (the injection).
    inject_after_starttls: Option<&'static str>,
    /// Wait before answering the final dot.
    dot_delay: Duration,
    /// Before answering MAIL, RCPT, DATA, RSET or a final dot, wait up to this long for
    /// more input; if the client sent more without waiting for the answer, the log
    /// says `<more before the reply>` (a pipelining client).
    hold_replies: Duration,
    /// RCPT TO this address is refused (550); DATA then gets 503.
    refuse_rcpt: Option<&'static str>,
    /// After this many accepted messages in a session, MAIL gets 421 and the relay
    /// hangs up.
    close_after: Option<usize>,
}

/// A relay on a loopback port; `log` is every line the client sent (a body as
/// `<body to {To header}>`), and after STARTTLS the bytes it sent next (`<n bytes after
/// STARTTLS>`).
struct Relay {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    fn start(script: Script) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (script, log) = (script.clone(), log2.clone());
                std::thread::spawn(move || session(conn, &script, &log));
            }
        });
        Relay { port, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn session(conn: std::net::TcpStream, script: &Script, log: &Mutex<Vec<String>>) {
    let mut out = conn.try_clone().unwrap();
    let mut input = BufReader::new(conn);
    let _ = out.write_all(b"220 relay.test ESMTP\r\n");
    let mut line = String::new();
    let (mut accepted, mut recipients) = (0, 0);
    loop {
        line.clear();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_string();
        log.lock().unwrap().push(command.clone());
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut r = String::from("250-relay.test\r\n");
                for e in &script.extensions {
                    r.push_str(&format!("250-{e}\r\n"));
                }
                r + "250 ENHANCEDSTATUSCODES\r\n"
            }
            "STARTTLS" => {
                let mut r = String::from("220 2.0.0 ready to start TLS\r\n");
                r.push_str(script.inject_after_starttls.unwrap_or(""));
                let _ = out.write_all(r.as_bytes());
                // A client that goes on sends its TLS ClientHello now.
                let mut rest = Vec::new();
                let _ = input
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_secs(3)));
                let _ = input.read_to_end(&mut rest);
                log.lock()
                    .unwrap()
                    .push(format!("<{} bytes after STARTTLS>", rest.len()));
                return;
            }
            "AUTH" => "235 2.7.0 authenticated\r\n".to_string(),
            "MAIL" if script.close_after == Some(accepted) => {
                hold(&mut input, script, log);
                let _ = out.write_all(b"421 4.3.2 closing connection\r\n");
                return;
            }
            "MAIL" | "RSET" => {
                recipients = 0;
                hold(&mut input, script, log);
                "250 2.0.0 ok\r\n".to_string()
            }
            "RCPT" => {
                hold(&mut input, script, log);
                match script.refuse_rcpt {
                    Some(a) if command.contains(&format!("<{a}>")) => {
                        "550 5.1.1 no such user\r\n".to_string()
                    }
                    _ => {
                        recipients += 1;
                        "250 2.0.0 ok\r\n".to_string()
                    }
                }
            }
            "DATA" if recipients == 0 => {
                hold(&mut input, script, log);
                "503 5.5.1 no valid recipients\r\n".to_string()
            }
            "DATA" => {
                hold(&mut input, script, log);
                let _ = out.write_all(b"354 go ahead\r\n");
                let mut body = String::new();
                while !body.ends_with("\r\n.\r\n") {
                    let mut l = String::new();
                    if input.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    body.push_str(&l);
                }
                let to = body
                    .lines()
                    .find_map(|l| l.strip_prefix("To: "))
                    .unwrap_or("?");
                log.lock().unwrap().push(format!("<body to {to}>"));
                hold(&mut input, script, log);
                std::thread::sleep(script.dot_delay);
                accepted += 1;
                recipients = 0;
                "250 2.0.0 queued\r\n".to_string()
            }
            "QUIT" => {
                let _ = out.write_all(b"221 bye\r\n");
                return;
            }
            _ => "502 5.5.2 unknown command\r\n".to_string(),
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Waits up to `script.hold_replies` for input the client sent before this reply.
fn hold(input: &mut BufReader<std::net::TcpStream>, script: &Script, log: &Mutex<Vec<String>>) {
    if script.hold_replies.is_zero() {
        return;
    }
    let more = !input.buffer().is_empty() || {
        let _ = input.get_ref().set_read_timeout(Some(script.hold_replies));
        let filled = input.fill_buf().is_ok_and(|b| !b.is_empty());
        let _ = input.get_ref().set_read_timeout(None);
        filled
    };
    if more {
        log.lock().unwrap().push("<more before the reply>".into());
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bytes_injected_after_the_starttls_reply_end_the_session_before_any_handshake() {
    let relay = Relay::start(Script {
        extensions: vec!["STARTTLS", "PIPELINING"],
        inject_after_starttls: Some("250-relay.test\r\n250 AUTH PLAIN\r\n"),
        ..Script::default()
    });
    let nl = Newsletter::generated(2, Some(relay.port));
    nl.set_smtp(&[("tls", "\"starttls\"")]);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("STARTTLS injection"),
        "{}",
        stderr(&out)
    );
    // No TLS ClientHello (nor anything else) followed, and nobody was marked.
    let lines = relay.lines();
    assert_eq!(
        lines.last().unwrap(),
        "<0 bytes after STARTTLS>",
        "{lines:?}"
    );
    assert_eq!(n(&nl.status(false), "pending"), 2);
}

#[test]
fn the_reply_to_the_final_dot_gets_the_data_timeout_not_the_command_timeout() {
    let relay = Relay::start(Script {
        extensions: vec!["PIPELINING"],
        dot_delay: Duration::from_millis(2500),
        ..Script::default()
    });
    let nl = Newsletter::generated(1, Some(relay.port));
    nl.set_smtp(&[("timeout", "\"1s\""), ("data_timeout", "\"10s\"")]);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let status = nl.status(false);
    assert_eq!(
        (n(&status, "sent"), n(&status, "in_doubt")),
        (1, 0),
        "{status}"
    );

    // A relay slower than data_timeout: the message is in doubt, not lost.
    let nl = Newsletter::generated(1, Some(relay.port));
    nl.set_smtp(&[("timeout", "\"1s\""), ("data_timeout", "\"1s\"")]);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert_eq!(n(&nl.status(false), "in_doubt"), 1);
}

#[test]
fn auth_is_never_sent_in_clear_unless_allowed_for_a_loopback_relay() {
    let relay = Relay::start(Script {
        extensions: vec!["AUTH PLAIN LOGIN"],
        ..Script::default()
    });
    let nl = Newsletter::generated(2, Some(relay.port));
    nl.set_smtp(&[
        ("username", "\"sender\""),
        ("password_env", "\"TEST_SMTP_PASSWORD\""),
    ]);
    let run = |nl: &Newsletter, args: &[&str]| {
        nl.command(args)
            .env("TEST_SMTP_PASSWORD", "s3cret")
            .output()
            .unwrap()
    };
    let out = run(&nl, &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never sends AUTH in clear"),
        "{}",
        stderr(&out)
    );
    assert!(
        !relay.lines().iter().any(|l| l.starts_with("AUTH")),
        "{:?}",
        relay.lines()
    );
    assert_eq!(n(&nl.status(false), "pending"), 2);
    let check = run(&nl, &["check"]);
    assert_eq!(code(&check), Some(1));
    assert!(
        stdout(&check).contains("allow_plaintext_auth"),
        "{}",
        stdout(&check)
    );

    // Allowed for the relay on 127.0.0.1: check says what happens, the send authenticates.
    nl.set_smtp(&[("allow_plaintext_auth", "true")]);
    let check = run(&nl, &["check"]);
    assert_eq!(code(&check), Some(0), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("AUTH is sent without TLS"),
        "{}",
        stdout(&check)
    );
    let out = run(&nl, &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(relay.lines().iter().any(|l| l.starts_with("AUTH PLAIN ")));

    // Not for a relay across a network: refused by check and by send.
    nl.set_smtp(&[("host", "\"relay.example.org\"")]);
    let check = run(&nl, &["check"]);
    assert_eq!(code(&check), Some(1));
    assert!(
        stdout(&check).contains("only accepted for a relay on this machine"),
        "{}",
        stdout(&check)
    );
    let out = run(&nl, &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("only accepted for a relay on this machine"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_internationalized_from_domain_goes_into_mail_from_as_a_labels() {
    let relay = Relay::start(Script {
        extensions: vec!["PIPELINING"],
        ..Script::default()
    });
    let nl = Newsletter::generated(1, Some(relay.port));
    let config = nl.root().join("brief.toml");
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("<brief@news.example.org>", "<brief@bücher.example>");
    std::fs::write(&config, toml).unwrap();
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let lines = relay.lines();
    assert!(
        lines.contains(&"MAIL FROM:<brief@xn--bcher-kva.example>".to_string()),
        "{lines:?}"
    );
}

#[test]
fn the_return_path_and_dsn_parameters_reach_a_relay_that_offers_dsn() {
    let server = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        2,
        Some(server.port),
        "return_path = \"bounces@news.example.org\"\n",
    );
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    for (rcpt, text) in &messages {
        let mail = header(text, "X-Mail-Args").unwrap();
        assert_eq!(
            mail,
            "<bounces@news.example.org> RET=HDRS ENVID=brief.send.e1"
        );
        let rcpt_args = header(text, "X-Rcpt-Args").unwrap();
        assert_eq!(
            rcpt_args,
            format!("<{rcpt}> NOTIFY=FAILURE,DELAY ORCPT=rfc822;{rcpt}")
        );
        // The From header stays the newsletter's.
        assert!(header(text, "From")
            .unwrap()
            .contains("<brief@news.example.org>"));
    }
}

#[test]
fn no_dsn_parameters_for_a_relay_that_does_not_offer_dsn() {
    let relay = Relay::start(Script {
        extensions: vec!["PIPELINING"],
        ..Script::default()
    });
    let nl = Newsletter::generated(1, Some(relay.port));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let lines = relay.lines();
    assert!(
        lines.contains(&"MAIL FROM:<brief@news.example.org>".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"RCPT TO:<reader0000@example.org>".to_string()),
        "{lines:?}"
    );
}

/// The replies that came after the client had already sent more (`hold_replies`).
fn pipelined(lines: &[String]) -> Vec<&str> {
    lines
        .windows(2)
        .filter(|w| w[1] == "<more before the reply>")
        .map(|w| w[0].as_str())
        .collect()
}

#[test]
fn the_next_envelope_follows_the_final_dot_when_the_relay_offers_pipelining() {
    let relay = Relay::start(Script {
        extensions: vec!["PIPELINING"],
        hold_replies: Duration::from_millis(300),
        refuse_rcpt: Some("reader0002@example.org"),
        ..Script::default()
    });
    let nl = Newsletter::generated_with(5, Some(relay.port), "concurrency = 1\n");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let status = nl.status(false);
    assert_eq!(
        (n(&status, "sent"), n(&status, "bounced")),
        (4, 1),
        "{status}"
    );
    let lines = relay.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("EHLO")).count(),
        1,
        "one session: {lines:?}"
    );
    // RFC 2920: MAIL, RCPT and DATA of the next reader went out behind each body but
    // the last, before the reply to its final dot. The first body may leave before the
    // producer has queued the second reader (a race at the start of every run), so it
    // is not counted: readers 1 and 3 must carry the next envelope.
    let bodies = lines.iter().filter(|l| l.starts_with("<body to ")).count();
    assert_eq!(bodies, 4, "{lines:?}");
    let after_a_body: Vec<&str> = pipelined(&lines)
        .into_iter()
        .filter(|l| l.starts_with("<body to ") && !l.contains("reader0000"))
        .collect();
    assert_eq!(
        after_a_body,
        [
            "<body to Reader 1 <reader0001@example.org>>",
            "<body to Reader 3 <reader0003@example.org>>"
        ],
        "{lines:?}"
    );
    // Every body went on its own reader's envelope.
    let mut rcpt = String::new();
    for l in &lines {
        if let Some(to) = l.strip_prefix("RCPT TO:<") {
            rcpt = to.split('>').next().unwrap().to_string();
        }
        if let Some(to) = l.strip_prefix("<body to ") {
            assert!(to.contains(&format!("<{rcpt}>")), "{rcpt}: {l}");
        }
    }
    // The refused reader's group ended with DATA (503); the next one began with RSET.
    let refused = lines
        .iter()
        .position(|l| l.starts_with("RCPT TO:<reader0002@"))
        .unwrap();
    let next: Vec<&str> = lines[refused + 1..]
        .iter()
        .filter(|l| !l.starts_with('<'))
        .take(2)
        .map(|l| l.as_str())
        .collect();
    assert_eq!(next, ["DATA", "RSET"], "{lines:?}");
    assert_eq!(
        nl.recipients("bounced"),
        ["reader0002@example.org"],
        "{status}"
    );
}

#[test]
fn a_relay_without_pipelining_gets_one_command_at_a_time() {
    let relay = Relay::start(Script {
        hold_replies: Duration::from_millis(150),
        ..Script::default()
    });
    let nl = Newsletter::generated_with(3, Some(relay.port), "concurrency = 1\n");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(n(&nl.status(false), "sent"), 3);
    let lines = relay.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("<body to ")).count(),
        3,
        "{lines:?}"
    );
    assert_eq!(pipelined(&lines), Vec::<&str>::new(), "{lines:?}");
}

#[test]
fn a_421_to_the_envelope_behind_a_body_sends_that_reader_on_a_new_connection() {
    let relay = Relay::start(Script {
        extensions: vec!["PIPELINING"],
        close_after: Some(2),
        ..Script::default()
    });
    let nl = Newsletter::generated_with(5, Some(relay.port), "concurrency = 1\n");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let status = nl.status(false);
    assert_eq!(
        (
            n(&status, "sent"),
            n(&status, "deferred"),
            n(&status, "in_doubt")
        ),
        (5, 0, 0),
        "{status}"
    );
    let lines = relay.lines();
    // Two messages per session, then 421 to the third MAIL, behind the second body.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("EHLO")).count(),
        3,
        "{lines:?}"
    );
    let bodies: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("<body to "))
        .collect();
    assert_eq!(bodies.len(), 5, "each reader once: {lines:?}");
}
