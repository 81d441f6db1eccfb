//! Provider webhooks (`POST /hooks/<provider>` of the real `brief serve`, over a real
//! socket): Mailgun, Postmark, SendGrid and SES over SNS, with payloads shaped like
//! each provider's documented examples and signed with keys the test makes (ring for
//! HMAC and ECDSA, the openssl CLI for SNS's RSA certificate). Every test first sends
//! edition `e1` to the outbox, so the journal holds real Message-IDs to attribute to.

use crate::harness::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use brief::store::Store;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:brief-events";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem";

/// Edition e1 sent to three readers through the outbox, then `[hooks]` set to `hooks`.
/// Returns the newsletter and each reader's Message-ID, as the outbox files carry it.
fn sent(hooks: &str) -> (Newsletter, BTreeMap<String, String>) {
    let nl = Newsletter::generated(3, None);
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let ids = outbox_ids(&nl, "e1");
    assert_eq!(ids.len(), 3);
    let config = nl.read("brief.toml");
    nl.write("brief.toml", &format!("{config}\n[hooks]\n{hooks}\n"));
    (nl, ids)
}

/// Each reader's Message-ID in the outbox copy of `edition`.
fn outbox_ids(nl: &Newsletter, edition: &str) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for (_, path) in files(&nl.root().join("outbox").join(edition)) {
        let msg = std::fs::read_to_string(path).unwrap();
        let to = header(&msg, "To").unwrap();
        let to = to.rsplit('<').next().unwrap().trim_end_matches('>');
        ids.insert(to.to_string(), header(&msg, "Message-ID").unwrap());
    }
    ids
}

fn epoch(now: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(now)
        .unwrap()
        .timestamp()
}

fn suppressed(nl: &Newsletter) -> BTreeMap<String, (String, String)> {
    nl.suppressions()
        .into_iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_string(),
                (
                    s["source"].as_str().unwrap().to_string(),
                    s["edition"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

fn events(nl: &Newsletter) -> Vec<brief::store::ProviderEvent> {
    Store::open(&nl.path("state/brief.db"))
        .unwrap()
        .provider_events()
        .unwrap()
}

fn post(server: &Server, provider: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    server.request("POST", &format!("/brief/hooks/{provider}"), headers, body)
}

// --- Mailgun -------------------------------------------------------------------------

/// A Mailgun webhook body signed with `key` (the harness's secret is the signing key).
fn mailgun(key: &str, timestamp: i64, token: &str, event: &Value) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&k, format!("{timestamp}{token}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": hex},
        "event-data": event,
    }))
    .unwrap()
}

fn mailgun_failed(id: &str, severity: &str, recipient: &str, message_id: &str) -> Value {
    json!({
        "event": "failed", "id": id, "timestamp": 1521233123.501324, "log-level": "error",
        "severity": severity, "reason": "bounce", "recipient": recipient,
        "recipient-domain": "example.org",
        "envelope": {"sender": "brief@news.example.org", "transport": "smtp", "targets": recipient},
        "delivery-status": {"attempt-no": 1, "message": "550 5.1.1 The email account that you tried to reach does not exist",
                            "code": 550, "description": "", "session-seconds": 0.4},
        "message": {"headers": {"to": recipient, "message-id": message_id.trim_matches(['<', '>']),
                                "from": "The Test Brief <brief@news.example.org>", "subject": "Night trains are back"},
                    "attachments": [], "size": 111},
        "flags": {"is-routed": false, "is-authenticated": true, "is-system-test": false, "is-test-mode": false},
        "tags": [], "user-variables": {}
    })
}

#[test]
fn mailgun_accepts_signed_events_and_refuses_forged_stale_and_replayed_ones() {
    let (nl, ids) = sent("mailgun_signing_key_env = \"BRIEF_SECRET\"");
    let server = nl.serve();
    let now = epoch(NOW);
    let ann = "reader0000@example.org";
    let hard = mailgun_failed("G9Bn5sl1TC6nu79C8C0bwg", "permanent", ann, &ids[ann]);

    let forged = mailgun("not the key", now, "tok-forged", &hard);
    assert_eq!(post(&server, "mailgun", &[JSON], &forged).status, 401);
    let stale = mailgun(SECRET, now - 301, "tok-stale", &hard);
    assert_eq!(post(&server, "mailgun", &[JSON], &stale).status, 401);
    assert!(suppressed(&nl).is_empty(), "nothing recorded when refused");
    assert!(events(&nl).is_empty());

    let body = mailgun(SECRET, now - 60, "tok-1", &hard);
    let ok = post(&server, "mailgun", &[JSON], &body);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("suppressed 1"), "{}", ok.body);
    assert_eq!(
        suppressed(&nl).get(ann),
        Some(&("bounce".to_string(), "e1".to_string()))
    );
    // The same request again is a replay; the same event with a fresh signature is a
    // redelivery, and counts nothing twice.
    assert_eq!(post(&server, "mailgun", &[JSON], &body).status, 403);
    let again = post(
        &server,
        "mailgun",
        &[JSON],
        &mailgun(SECRET, now, "tok-2", &hard),
    );
    assert_eq!(again.status, 200);
    assert!(again.body.contains("duplicates 1"), "{}", again.body);

    // Temporary: recorded as soft, not suppressed. A stranger: recorded, nothing changed.
    let bob = "reader0001@example.org";
    let soft = mailgun_failed("soft-1", "temporary", bob, &ids[bob]);
    assert_eq!(
        post(
            &server,
            "mailgun",
            &[JSON],
            &mailgun(SECRET, now, "tok-3", &soft)
        )
        .status,
        200
    );
    let stranger = mailgun_failed("stranger-1", "permanent", "stranger@example.org", "<x@y>");
    let res = post(
        &server,
        "mailgun",
        &[JSON],
        &mailgun(SECRET, now, "tok-4", &stranger),
    );
    assert_eq!(res.status, 200);
    assert!(res.body.contains("unattributed 1"), "{}", res.body);
    let mut complained = json!({"event": "complained", "id": "c-1", "timestamp": 1521233123.5,
        "recipient": "reader0002@example.org", "message": {"headers": {"message-id": "none@x"}}});
    assert_eq!(
        post(
            &server,
            "mailgun",
            &[JSON],
            &mailgun(SECRET, now, "tok-5", &complained)
        )
        .status,
        200
    );
    complained["id"] = json!("u-1");
    complained["event"] = json!("unsubscribed");
    assert_eq!(
        post(
            &server,
            "mailgun",
            &[JSON],
            &mailgun(SECRET, now, "tok-6", &complained)
        )
        .status,
        200
    );

    let list = suppressed(&nl);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        list.get("reader0002@example.org").map(|s| s.0.as_str()),
        Some("complaint")
    );
    let recorded = events(&nl);
    let kinds: Vec<(&str, &str, Option<&str>)> = recorded
        .iter()
        .map(|e| (e.kind.as_str(), e.outcome.as_str(), e.status.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("hard", "suppressed", Some("5.1.1")),
            ("soft", "counted", Some("5.1.1")),
            ("hard", "unattributed", Some("5.1.1")),
            ("complaint", "suppressed", None),
            ("unsubscribe", "already-suppressed", None),
        ]
    );
    assert_eq!(recorded[0].message_id.as_deref(), Some(ids[ann].as_str()));

    assert_eq!(
        post(&server, "mailgun", &[JSON], b"{\"signature\":").status,
        400
    );
    let unsigned = serde_json::to_vec(&json!({"event-data": hard})).unwrap();
    assert_eq!(post(&server, "mailgun", &[JSON], &unsigned).status, 400);
    // Providers that are not configured do not exist.
    for other in ["postmark", "sendgrid", "ses", "nosuch"] {
        assert_eq!(post(&server, other, &[JSON], b"{}").status, 404, "{other}");
    }
    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(post(&server, "mailgun", &[JSON], &huge).status, 413);
}

/// Provider events go through the same `[bounces]` policy as mailed bounces: counted
/// by `brief status`, suppressing with source `bounce` and the status, soft ones only
/// three editions in a row (the default `soft = 3`), a redelivery counted once.
#[test]
fn provider_events_go_through_the_bounce_policy_and_count_in_status() {
    let (nl, e1) = sent("mailgun_signing_key_env = \"BRIEF_SECRET\"");
    let mut ids = BTreeMap::from([("e1", e1)]);
    for (edition, day) in [("e2", "2026-11-21"), ("e3", "2026-11-22")] {
        nl.write(
            &format!("editions/{edition}.md"),
            &format!("+++\ntitle = \"Issue {edition}\"\ndate = {day}\n+++\n\nMore trains.\n"),
        );
        let at = format!("{day}T09:00:00Z");
        assert_eq!(
            code(&nl.run_at(&at, &["send", "--edition", edition])),
            Some(0)
        );
        ids.insert(edition, outbox_ids(&nl, edition));
    }
    let server = nl.serve();
    let now = epoch(NOW);
    let (ann, bob, cat) = (
        "reader0000@example.org",
        "reader0001@example.org",
        "reader0002@example.org",
    );
    let mut token = 0;
    let mut deliver = |event: &Value| {
        token += 1;
        let body = mailgun(SECRET, now, &format!("tok-{token}"), event);
        let res = post(&server, "mailgun", &[JSON], &body);
        assert_eq!(res.status, 200, "{}", res.body);
        res.body
    };

    // A hard bounce for e1, delivered twice by the provider.
    let hard = mailgun_failed("hard-ann", "permanent", ann, &ids["e1"][ann]);
    assert!(deliver(&hard).contains("suppressed 1"));
    assert!(deliver(&hard).contains("duplicates 1"));
    let status = nl.status(false);
    assert_eq!(n(&status, "bounced_async"), 1, "{status}");
    assert_eq!(n(&status, "suppressed_by_bounces"), 1, "{status}");
    let list = nl.suppressions();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["address"], ann);
    assert_eq!(list[0]["source"], "bounce");
    assert_eq!(list[0]["edition"], "e1");
    assert_eq!(list[0]["status"], "5.1.1");

    // Soft bounces: bob's in all three editions suppress at the third, cat's one does not.
    let soft = |edition: &str, who: &str| {
        let id = format!("soft-{edition}-{who}");
        mailgun_failed(&id, "temporary", who, &ids[edition][who])
    };
    assert!(deliver(&soft("e1", cat)).contains("suppressed 0"));
    for edition in ["e1", "e2"] {
        assert!(deliver(&soft(edition, bob)).contains("suppressed 0"));
    }
    assert!(!suppressed(&nl).contains_key(bob));
    assert!(deliver(&soft("e3", bob)).contains("suppressed 1"));
    assert!(deliver(&soft("e3", bob)).contains("duplicates 1"));
    let list = suppressed(&nl);
    assert_eq!(
        list.get(bob),
        Some(&("bounce".to_string(), "e3".to_string()))
    );
    assert!(!list.contains_key(cat), "{list:?}");
    let status = nl.status(false);
    assert_eq!(n(&status, "bounced_async"), 3, "{status}");
    assert_eq!(n(&status, "suppressed_by_bounces"), 1, "{status}");
    let out = nl.run(&["status", "--edition", "e3", "--json"]);
    let e3: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&e3, "bounced_async"), 1, "{e3}");
    assert_eq!(n(&e3, "suppressed_by_bounces"), 1, "{e3}");
}

// --- Postmark ------------------------------------------------------------------------

#[test]
fn postmark_needs_its_credentials_and_maps_bounces_complaints_and_suppressions() {
    let (nl, _) = sent("postmark_user = \"brief\"\npostmark_password_env = \"BRIEF_OLD_SECRET\"");
    let server = nl.serve();
    let auth = format!("Basic {}", STANDARD.encode(format!("brief:{OLD_SECRET}")));
    let wrong = format!("Basic {}", STANDARD.encode("brief:guess"));
    let bounce = |id: u64, ty: &str, email: &str| {
        serde_json::to_vec(&json!({
            "RecordType": "Bounce", "MessageStream": "outbound", "ID": id, "Type": ty, "TypeCode": 1,
            "Name": "Hard bounce", "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {}, "ServerID": 23, "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": email, "From": "brief@news.example.org", "BouncedAt": "2026-11-20T08:59:00.9070259Z",
            "DumpAvailable": true, "Inactive": true, "CanActivate": true, "Subject": "Night trains are back",
            "Content": ""
        }))
        .unwrap()
    };
    let ann = bounce(4323372036854775807, "HardBounce", "reader0000@example.org");
    let res = post(&server, "postmark", &[JSON], &ann);
    assert_eq!(res.status, 401);
    assert!(res.header("www-authenticate").is_some());
    assert_eq!(
        post(
            &server,
            "postmark",
            &[JSON, ("Authorization", &wrong)],
            &ann
        )
        .status,
        401
    );
    assert!(events(&nl).is_empty());

    let with = [JSON, ("Authorization", auth.as_str())];
    assert_eq!(post(&server, "postmark", &with, &ann).status, 200);
    assert!(post(&server, "postmark", &with, &ann)
        .body
        .contains("duplicates 1"));
    let soft = bounce(2, "SoftBounce", "reader0001@example.org");
    assert_eq!(post(&server, "postmark", &with, &soft).status, 200);
    let complaint = serde_json::to_vec(&json!({
        "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 3, "Type": "SpamComplaint",
        "TypeCode": 512, "Name": "Spam complaint", "Tag": "", "MessageID": "00000000-0000-0000-0000-000000000000",
        "ServerID": 1234, "Description": "", "Details": "Test spam complaint details", "Email": "reader0001@example.org",
        "From": "brief@news.example.org", "BouncedAt": "2026-11-20T08:59:00Z", "DumpAvailable": true,
        "Inactive": true, "CanActivate": false, "Subject": "Night trains are back"
    }))
    .unwrap();
    assert_eq!(post(&server, "postmark", &with, &complaint).status, 200);
    let change = serde_json::to_vec(&json!({
        "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 123456, "MessageStream": "outbound", "ChangedAt": "2026-11-20T08:59:34.416071Z",
        "Recipient": "reader0002@example.org", "Origin": "Recipient", "SuppressSending": true,
        "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}
    }))
    .unwrap();
    assert_eq!(post(&server, "postmark", &with, &change).status, 200);
    let open = br#"{"RecordType":"Open","MessageID":"x","Recipient":"reader0002@example.org"}"#;
    assert_eq!(post(&server, "postmark", &with, open).status, 200);
    assert_eq!(post(&server, "postmark", &with, b"[]").status, 400);

    let list = suppressed(&nl);
    let sources: Vec<(&str, &str)> = list
        .iter()
        .map(|(a, (s, _))| (a.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        sources,
        [
            ("reader0000@example.org", "bounce"),
            ("reader0001@example.org", "complaint"),
            ("reader0002@example.org", "provider"),
        ]
    );
    assert!(list.values().all(|(_, edition)| edition == "e1"));
    assert_eq!(events(&nl).len(), 4, "the open is not recorded");
}

// --- SendGrid ------------------------------------------------------------------------

struct SendgridKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl SendgridKey {
    /// A fresh P-256 key; its public half goes where `[hooks] sendgrid_public_key`
    /// points, as the bare base64 SubjectPublicKeyInfo SendGrid's console shows.
    fn new(nl: &Newsletter) -> SendgridKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        nl.write("keys/sendgrid.pem", &format!("{}\n", STANDARD.encode(spki)));
        SendgridKey { pair, rng }
    }

    fn headers(&self, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        let ts = timestamp.to_string();
        let sig = self
            .pair
            .sign(&self.rng, &[ts.as_bytes(), body].concat())
            .unwrap();
        vec![
            ("Content-Type".into(), "application/json".into()),
            (
                "X-Twilio-Email-Event-Webhook-Signature".into(),
                STANDARD.encode(sig.as_ref()),
            ),
            ("X-Twilio-Email-Event-Webhook-Timestamp".into(), ts),
        ]
    }
}

fn post_owned(
    server: &Server,
    provider: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    post(server, provider, &h, body)
}

#[test]
fn sendgrid_verifies_the_ecdsa_signature_and_maps_the_batch() {
    let (nl, ids) = sent("sendgrid_public_key = \"keys/sendgrid.pem\"");
    let key = SendgridKey::new(&nl);
    let server = nl.serve();
    let now = epoch(NOW);
    let ann = "reader0000@example.org";
    let bob = "reader0001@example.org";
    let batch = serde_json::to_vec(&json!([
        {"email": ann, "timestamp": now - 30, "smtp-id": ids[ann], "event": "bounce",
         "category": ["cat facts"], "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
         "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"},
        {"email": bob, "timestamp": now - 30, "smtp-id": ids[bob], "event": "bounce",
         "sg_event_id": "blocked-1", "sg_message_id": "m2", "reason": "550 5.7.1 blocked by policy",
         "status": "5.7.1", "type": "blocked"},
        {"email": "reader0002@example.org", "timestamp": now - 20, "event": "spamreport",
         "sg_event_id": "spam-1", "sg_message_id": "m3"},
        {"email": "stranger@example.org", "timestamp": now - 20, "event": "unsubscribe",
         "sg_event_id": "unsub-1", "sg_message_id": "m4"},
        {"email": ann, "timestamp": now - 10, "event": "open", "sg_event_id": "open-1",
         "useragent": "Mozilla/4.0", "ip": "255.255.255.255"}
    ]))
    .unwrap();
    let headers = key.headers(now, &batch);

    // Altered body, another timestamp, an old signature, no signature: refused.
    let mut altered = batch.clone();
    altered[3] ^= 1;
    assert_eq!(
        post_owned(&server, "sendgrid", &headers, &altered).status,
        401
    );
    let mut other_time = headers.clone();
    other_time[2].1 = (now + 1).to_string();
    assert_eq!(
        post_owned(&server, "sendgrid", &other_time, &batch).status,
        401
    );
    let stale = key.headers(now - 72 * 3600 - 1, &batch);
    assert_eq!(post_owned(&server, "sendgrid", &stale, &batch).status, 401);
    assert_eq!(post(&server, "sendgrid", &[JSON], &batch).status, 401);
    assert!(events(&nl).is_empty());

    let res = post_owned(&server, "sendgrid", &headers, &batch);
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.body
            .contains("recorded 4, duplicates 0, suppressed 2, unattributed 1"),
        "{}",
        res.body
    );
    // SendGrid retries a batch it got no 2xx for: signed again, counted once.
    let again = post_owned(&server, "sendgrid", &key.headers(now + 5, &batch), &batch);
    assert!(
        again.body.contains("recorded 0, duplicates 4"),
        "{}",
        again.body
    );

    let list = suppressed(&nl);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[ann].0, "bounce");
    assert_eq!(list["reader0002@example.org"].0, "complaint");
    let soft = events(&nl)
        .into_iter()
        .find(|e| e.event_id == "blocked-1")
        .unwrap();
    assert_eq!(
        (soft.kind.as_str(), soft.status.as_deref()),
        ("soft", Some("5.7.1"))
    );
    let bad = b"{\"not\": \"a list\"}";
    assert_eq!(
        post_owned(&server, "sendgrid", &key.headers(now, bad), bad).status,
        400
    );
}

// --- SES over SNS --------------------------------------------------------------------

/// An RSA key and a self-signed certificate made with openssl (valid 2020–2099: the
/// test clock is fixed), the certificate placed in brief's SNS certificate cache under
/// `CERT_URL`'s name, so no fetch is needed offline.
fn sns_certificate(nl: &Newsletter) -> std::path::PathBuf {
    let dir = nl.path("sns-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let at = |f: &str| dir.join(f);
    std::fs::write(at("index.txt"), "").unwrap();
    std::fs::write(at("serial"), "01\n").unwrap();
    std::fs::write(
        at("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = sns\n[sns]\ndatabase = {}\nnew_certs_dir = {}\nserial = {}\n\
             default_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
            at("index.txt").display(),
            dir.display(),
            at("serial").display()
        ),
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/test.sh installs the Debian package openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (key, csr, cert) = (at("key.pem"), at("req.csr"), at("cert.pem"));
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("req"),
        &os("-new"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-subj"),
        &os("/CN=sns.amazonaws.com"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        &os("ca"),
        &os("-batch"),
        &os("-selfsign"),
        &os("-notext"),
        &os("-config"),
        at("ca.cnf").as_os_str(),
        &os("-keyfile"),
        key.as_os_str(),
        &os("-in"),
        csr.as_os_str(),
        &os("-out"),
        cert.as_os_str(),
        &os("-startdate"),
        &os("20200101000000Z"),
        &os("-enddate"),
        &os("20991231000000Z"),
    ]);
    let cache =
        brief::hooks::ses::certificate_cache_file(&nl.path("state/sns-certificates"), CERT_URL);
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::copy(&cert, cache).unwrap();
    key
}

/// An SNS message with its Signature (version 1: SHA-1, 2: SHA-256) made by `key`.
fn sns(key: &std::path::Path, version: &str, mut m: Value) -> Vec<u8> {
    let fields: &[&str] = if m["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut canonical = String::new();
    for f in fields {
        if let Some(v) = m[*f].as_str() {
            canonical.push_str(&format!("{f}\n{v}\n"));
        }
    }
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    let mut child = Command::new("openssl")
        .args(["dgst", digest, "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(canonical.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    m["SignatureVersion"] = json!(version);
    m["Signature"] = json!(STANDARD.encode(out.stdout));
    serde_json::to_vec(&m).unwrap()
}

fn ses_bounce(
    sns_id: &str,
    bounce_type: &str,
    recipient: &str,
    status: &str,
    diagnostic: &str,
    message_id: &str,
) -> Value {
    let message = json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": status, "diagnosticCode": diagnostic}],
            "timestamp": "2026-11-20T08:59:38.237Z", "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            "remoteMtaIp": "127.0.2.0", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"},
        "mail": {"timestamp": "2026-11-20T08:59:37.237Z", "source": "brief@news.example.org",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/news.example.org", "sourceIp": "127.0.3.0",
            "sendingAccountId": "123456789012", "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            "destination": [recipient], "headersTruncated": false,
            "headers": [{"name": "From", "value": "The Test Brief <brief@news.example.org>"},
                        {"name": "To", "value": recipient}, {"name": "Message-ID", "value": message_id}],
            "commonHeaders": {"from": ["The Test Brief <brief@news.example.org>"], "to": [recipient], "messageId": message_id}}
    });
    json!({
        "Type": "Notification", "MessageId": sns_id, "TopicArn": TOPIC,
        "Message": message.to_string(), "Timestamp": "2026-11-20T08:59:39.655Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:123456789012:brief-events:c9135db0"
    })
}

#[test]
fn ses_verifies_sns_signatures_v1_and_v2_and_trusts_only_sns_hosts() {
    let (nl, ids) = sent(&format!("ses_topic_arn = \"{TOPIC}\""));
    let key = sns_certificate(&nl);
    let server = nl.serve();
    let sns_type = ("x-amz-sns-message-type", "Notification");
    let ann = "reader0000@example.org";
    let bob = "reader0001@example.org";

    let permanent = ses_bounce(
        "sns-1",
        "Permanent",
        ann,
        "5.1.1",
        "smtp; 550 5.1.1 user unknown",
        &ids[ann],
    );
    // Signed by a key that is not the certificate's: refused.
    let other_key = nl.path("other-key.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let forged = sns(&other_key, "1", permanent.clone());
    assert_eq!(post(&server, "ses", &[sns_type], &forged).status, 401);
    // A certificate anywhere but an SNS host is never fetched nor trusted.
    let mut elsewhere = permanent.clone();
    elsewhere["SigningCertURL"] =
        json!("https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem");
    assert_eq!(
        post(&server, "ses", &[sns_type], &sns(&key, "1", elsewhere)).status,
        403
    );
    let mut other_topic = permanent.clone();
    other_topic["TopicArn"] = json!("arn:aws:sns:eu-west-1:123456789012:someone-else");
    assert_eq!(
        post(&server, "ses", &[sns_type], &sns(&key, "2", other_topic)).status,
        403
    );
    let mut unknown_version =
        serde_json::from_slice::<Value>(&sns(&key, "2", permanent.clone())).unwrap();
    unknown_version["SignatureVersion"] = json!("3");
    assert_eq!(
        post(
            &server,
            "ses",
            &[sns_type],
            &serde_json::to_vec(&unknown_version).unwrap()
        )
        .status,
        401
    );
    assert!(events(&nl).is_empty());

    let v1 = sns(&key, "1", permanent);
    let res = post(&server, "ses", &[sns_type], &v1);
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(post(&server, "ses", &[sns_type], &v1)
        .body
        .contains("duplicates 1"));
    // Transient, but the host is unknown: hard all the same (SHA-256 signature).
    let transient = ses_bounce(
        "sns-2",
        "Transient",
        bob,
        "5.4.4",
        "smtp; 550 5.4.4 Host or domain name not found",
        &ids[bob],
    );
    assert_eq!(
        post(&server, "ses", &[sns_type], &sns(&key, "2", transient)).status,
        200
    );
    let full = ses_bounce(
        "sns-3",
        "Transient",
        "reader0002@example.org",
        "4.2.2",
        "smtp; 452 4.2.2 mailbox full",
        "<x@y>",
    );
    assert_eq!(
        post(&server, "ses", &[sns_type], &sns(&key, "2", full)).status,
        200
    );
    let complaint_message = json!({
        "notificationType": "Complaint",
        "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)", "complainedRecipients": [{"emailAddress": "reader0002@example.org"}],
            "complaintFeedbackType": "abuse", "arrivalDate": "2026-11-20T08:59:00.000Z",
            "timestamp": "2026-11-20T08:59:10.000Z", "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
        "mail": {"messageId": "ses-id", "commonHeaders": {"messageId": ids["reader0002@example.org"]}}
    });
    let complaint = json!({
        "Type": "Notification", "MessageId": "sns-4", "TopicArn": TOPIC, "Subject": "Amazon SES Email Event Notification",
        "Message": complaint_message.to_string(), "Timestamp": "2026-11-20T08:59:11.000Z",
        "SigningCertURL": CERT_URL
    });
    assert_eq!(
        post(&server, "ses", &[sns_type], &sns(&key, "1", complaint)).status,
        200
    );

    let list = suppressed(&nl);
    let sources: Vec<(&str, &str, &str)> = list
        .iter()
        .map(|(a, (s, e))| (a.as_str(), s.as_str(), e.as_str()))
        .collect();
    assert_eq!(
        sources,
        [
            (ann, "bounce", "e1"),
            (bob, "bounce", "e1"),
            ("reader0002@example.org", "complaint", "e1"),
        ]
    );
    let soft = events(&nl)
        .into_iter()
        .find(|e| e.event_id.starts_with("sns-3/"))
        .unwrap();
    assert_eq!(
        (soft.kind.as_str(), soft.outcome.as_str()),
        ("soft", "counted")
    );

    // A subscription is confirmed only for the configured topic, and only by a GET to
    // an SNS host: these are refused before any request goes out.
    let confirm = |topic: &str, url: &str| {
        json!({
            "Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
            "TopicArn": topic,
            "Message": format!("You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
            "SubscribeURL": url, "Timestamp": "2026-11-20T08:00:00.000Z", "SigningCertURL": CERT_URL
        })
    };
    let confirm_type = ("x-amz-sns-message-type", "SubscriptionConfirmation");
    let to_us = sns(
        &key,
        "1",
        confirm(TOPIC, "https://127.0.0.1/?Action=ConfirmSubscription"),
    );
    assert_eq!(post(&server, "ses", &[confirm_type], &to_us).status, 403);
    let other = sns(
        &key,
        "1",
        confirm(
            "arn:aws:sns:eu-west-1:123456789012:other",
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
        ),
    );
    assert_eq!(post(&server, "ses", &[confirm_type], &other).status, 403);
    assert_eq!(post(&server, "ses", &[sns_type], b"Hello").status, 400);
}

#[test]
fn check_reports_hooks_that_cannot_work() {
    let (nl, _) = sent(
        "mailgun_signing_key_env = \"BRIEF_NO_SUCH_KEY\"\npostmark_user = \"brief\"\n\
         sendgrid_public_key = \"keys/sendgrid.pem\"\nses_topic_arn = \"brief-events\"",
    );
    nl.write(
        "keys/sendgrid.pem",
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
    );
    let out = nl.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &stdout(&out);
    assert_ne!(code(&out), Some(0), "{text}");
    for expected in [
        "$BRIEF_NO_SUCH_KEY is not set here",
        "needs both postmark_user and postmark_password_env",
        "sendgrid_public_key",
        "is not an SNS topic ARN",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in {text}");
    }
    // brief serve refuses to start rather than answer 404 for a configured provider.
    let serve = nl
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_ne!(code(&serve), Some(0));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("BRIEF_NO_SUCH_KEY"));
}
