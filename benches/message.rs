//! Personalization + MIME build per message, on the sample edition (the newsletter at
//! the repository root). Goal: at least 50,000 messages/s on one core.
//!
//! `cargo bench --bench message` (the DKIM entries need `openssl` on PATH)

use brief::config::Config;
use brief::deliver::dkim::Signer;
use brief::deliver::{EditionParts, Envelope, Job, Prepared, Rendered, Retry};
use brief::store::{Entry, State, REAL};
use brief::token::Keyring;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;

fn job() -> Job {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("brief.toml")).expect("sample brief.toml");
    let columns = vec!["city".to_string()];
    let edition = brief::edition::all_paths(&config).expect("editions")[0].clone();
    let compiled = brief::compile::build(&config, &edition.to_string_lossy(), &columns)
        .expect("the sample edition compiles");
    eprintln!(
        "edition {}: html {} bytes, text {} bytes",
        compiled.slug,
        compiled.html.len(),
        compiled.text.len()
    );
    let prepared = Prepared::new(
        &Envelope {
            from: config.newsletter.from.clone(),
            reply_to: config.newsletter.reply_to.clone(),
            list_name: config.newsletter.name.clone(),
            list_id: config.newsletter.list_id.clone(),
            date: brief::clock::now(),
            columns: columns.clone(),
        },
        &EditionParts {
            subject: compiled.subject.clone(),
            html: compiled.html.clone(),
            text: compiled.text.clone(),
        },
    )
    .unwrap();
    Job {
        slug: compiled.slug.clone(),
        namespace: REAL,
        prepared,
        columns,
        keyring: Keyring::new(b"bench-secret-0123456789abcdef", &config.newsletter.list_id),
        base_url: config.newsletter.base_url.clone(),
        mailto: config.unsubscribe.mailto.clone(),
        domain: config.sender_domain(),
        envelope_from: "brief@news.example.org".into(),
        verp: false,
        resend_in_doubt: false,
        concurrency: 1,
        rate_per_second: 0.0,
        retry: Retry {
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(172_800),
        },
        progress: false,
        freezing: None,
        dkim: None,
    }
}

/// A signer with a fresh key from openssl (`genrsa 2048` or `genpkey ed25519`).
fn signer(openssl_args: &[&str]) -> Signer {
    let out = std::process::Command::new("openssl")
        .args(openssl_args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {openssl_args:?} failed");
    let pem = String::from_utf8(out.stdout).expect("PEM");
    Signer::from_pem(&pem, "news.example.org", "brief").expect("key loads")
}

fn entry(i: u64) -> Entry {
    Entry {
        id: i as i64,
        address: format!("reader{i}@example.org"),
        name: format!("Reader Nümber {i}"),
        fields: format!("{{\"city\":\"Gdańsk {i}\"}}"),
        state: State::Pending,
        attempts: 0,
        first_attempt_at: None,
        suppressed: false,
    }
}

fn bench(c: &mut Criterion) {
    let mut job = job();
    let entries: Vec<Entry> = (0..1024).map(entry).collect();
    let mut out = Rendered::default();
    job.personalize(&entries[0], &mut out).unwrap();
    eprintln!("message size {} bytes", job.prepared.len(&out));
    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("personalize (slices)", |b| {
        b.iter(|| {
            i = (i + 1) % entries.len();
            job.personalize(&entries[i], &mut out).unwrap()
        })
    });
    g.bench_function("personalize + contiguous bytes", |b| {
        b.iter(|| {
            i = (i + 1) % entries.len();
            job.personalize(&entries[i], &mut out).unwrap();
            job.prepared.to_bytes(&out)
        })
    });
    // DKIM: the same personalization, then the relaxed body hash and a signature.
    for (name, args) in [
        (
            "personalize + dkim ed25519",
            &["genpkey", "-algorithm", "ed25519"][..],
        ),
        ("personalize + dkim rsa-2048", &["genrsa", "2048"][..]),
    ] {
        job.dkim = Some(signer(args).into());
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % entries.len();
                job.personalize(&entries[i], &mut out).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
