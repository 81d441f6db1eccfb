//! Every trap in tests/testsuite/fixtures/mrml-traps/ (see its README) ends either refused with
//! a located message or rendered as mjml renders it.

use brief::compile::{compile_mjml, Finding};
use std::path::PathBuf;

fn traps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testsuite/fixtures/mrml-traps")
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

/// The error findings of a refused trap.
fn refused(src: &str) -> Vec<Finding> {
    let findings = compile_mjml(src).expect_err("refused");
    findings.into_iter().filter(|f| f.error).collect()
}

#[test]
fn every_trap_is_refused_with_a_location_or_rendered_as_mjml_does() {
    let mut names: Vec<String> = std::fs::read_dir(traps())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mjml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    for name in names {
        let src = std::fs::read_to_string(traps().join(&name)).unwrap();
        match name.as_str() {
            "attr-newline.mjml" => {
                let out = compile_mjml(&src).expect("compiles");
                assert!(!out.html.contains("\\n"), "a literal \\n in the HTML");
                for tag in out.html.split('<').skip(1) {
                    let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                    assert!(!tag.contains(['\n', '\t']), "{name}: <{tag}>");
                }
                assert!(out.html.contains("color: red;"));
                assert!(out.html.contains("alt=\"\""), "{name}: no alt");
                assert!(
                    out.findings
                        .iter()
                        .any(|f| !f.error && f.message.contains("alt=\"\"")),
                    "{:?}",
                    out.findings
                );
            }
            "body-crlf.mjml" | "head-crlf.mjml" | "head-lf.mjml" | "navbar-crlf.mjml" => {
                let out = compile_mjml(&src).unwrap_or_else(|f| panic!("{name}: {f:?}"));
                let expected = match name.as_str() {
                    "body-crlf.mjml" => ">hi<",
                    "navbar-crlf.mjml" => "href=\"/a\"",
                    _ => "<title>x</title>",
                };
                assert!(out.html.contains(expected), "{name}: no {expected}");
            }
            "carousel.mjml" => {
                let errors = refused(&src);
                assert!(errors[0].message.contains("mj-carousel"));
                assert_eq!(line_col(&src, errors[0].offset), (1, 39));
            }
            "duplicate-attribute.mjml" => {
                let errors = refused(&src);
                assert!(errors[0].message.contains("`font-size` is given twice"));
                let at = src.rfind("font-size").unwrap();
                assert_eq!(errors[0].offset, at);
            }
            "img-padding-unitless-zero.mjml" => {
                let out = compile_mjml(&src).expect("compiles");
                // Only the missing alt is reported; the padding is fixed silently.
                assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
                assert!(out.html.contains("width=\"150\""), "{name}: not 150 px");
            }
            other => panic!("{other}: a trap without a case here (see the README)"),
        }
    }
}
