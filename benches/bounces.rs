//! Bounce classification throughput: every message of the real-world corpus
//! (tests/fixtures/bounces/), and an mbox of brief's own Postfix DSNs streamed and
//! classified one at a time. Goal (issue 11): at least 2,000 messages/s on one core,
//! memory flat.
//!
//! `cargo bench --bench bounces`

use brief::bounce::{self, mailbox::Mbox};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).expect("corpus") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("folder") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|e| e == "eml") {
                    out.push(std::fs::read(f).expect("fixture"));
                }
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let messages = corpus();
    let mut group = c.benchmark_group("bounces");
    group.measurement_time(Duration::from_secs(10));
    group.sample_size(20);
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("read_report/corpus", |b| {
        b.iter(|| {
            for raw in &messages {
                std::hint::black_box(bounce::read_report(raw, false));
            }
        })
    });

    let postfix: Vec<&Vec<u8>> = messages
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("mta.news.example.org"))
        .collect();
    let copies = 1_000;
    let mut mbox = Vec::new();
    for i in 0..copies {
        mbox.extend_from_slice(b"From MAILER-DAEMON Tue Dec  1 07:47:01 2026\n");
        mbox.extend_from_slice(postfix[i % postfix.len()]);
        mbox.extend_from_slice(b"\n");
    }
    group.throughput(Throughput::Elements(copies as u64));
    group.bench_function("mbox_stream/postfix_dsns", |b| {
        b.iter(|| {
            let mut reader = Mbox::new(mbox.as_slice(), "bench");
            let mut n = 0;
            while let Some(msg) = reader.next_message().expect("in memory") {
                std::hint::black_box(bounce::read_report(&msg.raw, msg.truncated));
                n += 1;
            }
            assert_eq!(n, copies);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
