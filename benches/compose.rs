//! Compose + compile of the sample edition in process, its parts, and personalizing a
//! compiled edition for one recipient. `cargo bench --bench compose`;
//! scripts/bench-mjml.sh compares with the official mjml compiler.

use brief::compile::{compile_edition, compile_mjml};
use brief::compose::{Composer, RecipientValues};
use brief::config::Config;
use brief::edition;
use brief::personalize::{Escape, Template};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn benches(c: &mut Criterion) {
    let config = Config::load(&root().join("brief.toml")).expect("sample config");
    let composer = Composer::new(&config).expect("templates");
    let edition = edition::load(&root().join("editions/2026-11-20.md")).expect("sample edition");
    let columns = vec!["city".to_string()];
    let personal = RecipientValues::markers(&columns);

    c.bench_function("compose+compile sample edition", |b| {
        b.iter(|| {
            compile_edition(&config, &composer, black_box(edition.clone()), &columns).unwrap()
        })
    });
    c.bench_function("compose only (markdown + handlebars + text)", |b| {
        b.iter(|| {
            composer
                .compose(&config, black_box(&edition), &personal)
                .unwrap()
        })
    });
    let composed = composer.compose(&config, &edition, &personal).unwrap();
    c.bench_function("compile only (lint + mrml)", |b| {
        b.iter(|| compile_mjml(black_box(&composed.mjml)).unwrap())
    });
    c.bench_function("mrml only (parse + render)", |b| {
        let options = mrml::prelude::render::RenderOptions {
            disable_comments: true,
            social_icon_origin: None,
            fonts: Default::default(),
        };
        b.iter(|| {
            mrml::parse(black_box(&composed.mjml))
                .unwrap()
                .element
                .render(&options)
                .unwrap()
        })
    });
    c.bench_function("lint only", |b| {
        b.iter(|| brief::compile::lint::lint(black_box(&composed.mjml)))
    });
    c.bench_function("parse edition file", |b| {
        let src = std::fs::read_to_string(root().join("editions/2026-11-20.md")).unwrap();
        b.iter(|| edition::parse(&edition.path, black_box(&src)).unwrap())
    });
    c.bench_function("load templates (registry)", |b| {
        b.iter(|| Composer::new(black_box(&config)).unwrap())
    });

    let compiled = compile_edition(&config, &composer, edition.clone(), &columns).unwrap();
    let html = Template::parse(&compiled.html);
    let text = Template::parse(&compiled.text);
    let url = "https://news.example.org/brief/u/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGhIjKlMnOpQrStUv";
    let values = |t: &Template| -> Vec<&'static str> {
        t.fields()
            .iter()
            .map(|f| match f.as_str() {
                "unsubscribe_url" => url,
                "subscriber.name" => "Tom & Jerry",
                _ => "tom.jerry@example.org",
            })
            .collect()
    };
    let (hv, tv) = (values(&html), values(&text));
    let mut out = String::with_capacity(compiled.html.len() + 512);
    c.bench_function("personalize one recipient (html + text)", |b| {
        b.iter(|| {
            out.clear();
            html.render_into(black_box(&hv), Escape::Html, &mut out);
            text.render_into(black_box(&tv), Escape::None, &mut out);
            out.len()
        })
    });
}

criterion_group!(compose, benches);
criterion_main!(compose);
