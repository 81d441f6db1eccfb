//! The bounce corpus: real-world returned messages from many MTAs
//! (tests/fixtures/bounces/, sources and licences in its README.md), each labelled
//! with the kind and status a careful reading gives (manifest.tsv). Prints the
//! agreement rates and holds brief's classifier to the goals of issue 11: kind
//! >= 90 %, status class >= 95 %, and a bounce that is not hard called hard < 2 %.

use brief::bounce::{self, Kind};
use std::path::Path;

struct Label {
    file: String,
    kind: String,
    status: Option<String>,
}

fn manifest() -> Vec<Label> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let text = std::fs::read_to_string(root.join("manifest.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 3, "manifest line {l:?}: file, kind, status");
            Label {
                file: cols[0].to_string(),
                kind: cols[1].to_string(),
                status: (cols[2] != "-").then(|| cols[2].to_string()),
            }
        })
        .collect()
}

/// The message's verdict: the first hard or soft finding, else the first finding.
fn verdict(raw: &[u8]) -> (Kind, Option<String>, String) {
    let report = bounce::read_report(raw, false);
    let f = report
        .findings
        .iter()
        .find(|f| matches!(f.kind, Kind::Hard | Kind::Soft))
        .unwrap_or(&report.findings[0]);
    (
        f.kind,
        f.status.clone(),
        f.diagnostic.clone().unwrap_or_default(),
    )
}

#[test]
fn corpus_agreement() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let labels = manifest();
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "eml") {
                    on_disk.push(f.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    on_disk.sort();
    let mut labelled: Vec<&str> = labels.iter().map(|l| l.file.as_str()).collect();
    labelled.sort();
    assert_eq!(
        labelled, on_disk,
        "every fixture has exactly one manifest line"
    );

    let (mut kind_ok, mut class_total, mut class_ok, mut not_hard, mut wrong_hard) =
        (0, 0, 0, 0, 0);
    let mut rfc3464 = 0;
    for label in &labels {
        let raw = std::fs::read(root.join(&label.file)).unwrap();
        if String::from_utf8_lossy(&raw)
            .to_ascii_lowercase()
            .contains("message/delivery-status")
        {
            rfc3464 += 1;
        }
        let (kind, status, diagnostic) = verdict(&raw);
        let agrees = kind.as_str() == label.kind;
        kind_ok += usize::from(agrees);
        if label.kind != "hard" {
            not_hard += 1;
            wrong_hard += usize::from(kind == Kind::Hard);
        }
        let mut class_agrees = true;
        if let Some(expected) = &label.status {
            class_total += 1;
            class_agrees =
                status.as_deref().and_then(|s| s.chars().next()) == expected.chars().next();
            class_ok += usize::from(class_agrees);
        }
        if !agrees || !class_agrees {
            println!(
                "DIFF {}\texpected {} {}\tgot {} {}\t{}",
                label.file,
                label.kind,
                label.status.as_deref().unwrap_or("-"),
                kind.as_str(),
                status.as_deref().unwrap_or("-"),
                diagnostic.chars().take(160).collect::<String>()
            );
        }
    }
    let n = labels.len();
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "corpus: {n} messages ({rfc3464} RFC 3464, {} other); kind agrees {:.1} %, status class {:.1} % of {class_total}, not-hard called hard {:.2} % of {not_hard}",
        n - rfc3464,
        pct(kind_ok, n),
        pct(class_ok, class_total),
        pct(wrong_hard, not_hard)
    );
    assert!(n >= 150, "the corpus has {n} messages");
    assert!(pct(kind_ok, n) >= 90.0, "kind agreement below 90 %");
    assert!(
        pct(class_ok, class_total) >= 95.0,
        "status class agreement below 95 %"
    );
    assert!(
        pct(wrong_hard, not_hard) < 2.0,
        "not-hard called hard too often"
    );
}
