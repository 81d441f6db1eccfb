//! `brief preview`: a local web server that shows an edition as it is being written.
//!
//! The shell page (`/`) holds the compiled email in a frame 375 px or 640 px wide
//! (`?width=`), the text part beside it, the HTML size against Gmail's clip and what
//! `brief check` finds. A watcher polls the edition file, the templates folder and
//! the editors list every 300 ms; on a change it rebuilds, and the page, which
//! long-polls `/changes`, reloads itself. A broken edition shows its errors on the page;
//! the server keeps running.

mod page;

use crate::check;
use crate::compile::{self, GMAIL_CLIP_BYTES};
use crate::config::Config;
use crate::edition;
use crate::personalize::Escape;
use crate::sample::SampleReader;
use anyhow::{Context, Result};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the watcher looks at the files.
const POLL: Duration = Duration::from_millis(300);
/// How long `/changes` holds a request before answering "nothing new".
const LONG_POLL: Duration = Duration::from_secs(25);

/// The widths the frame offers: a phone and a desktop mail client.
pub const WIDTHS: [u32; 2] = [375, 640];

/// One build of the edition, as the page shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Grows by one with every rebuild; the page reloads when it changes.
    pub generation: u64,
    pub result: Result<Preview, Vec<String>>,
}

/// A successful build, filled in for the sample reader.
#[derive(Debug, Clone)]
pub struct Preview {
    pub slug: String,
    pub title: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub warnings: Vec<String>,
}

impl Preview {
    pub fn html_bytes(&self) -> usize {
        self.html.len()
    }

    pub fn clipped(&self) -> bool {
        self.html_bytes() > GMAIL_CLIP_BYTES
    }
}

/// Builds the edition and fills in the sample reader (the first row of the editors
/// list, placeholders otherwise), with what `brief check` finds in the edition and
/// the templates. Errors come back as lines to show.
pub fn build(config: &Config, edition_arg: &str) -> Result<Preview, Vec<String>> {
    let checked: Vec<String> = check::check(config, Some(edition_arg))
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    let sample = SampleReader::load(config);
    let compiled = compile::build(config, edition_arg, &sample.columns()).map_err(|e| {
        if checked.is_empty() {
            e.chain()
                .flat_map(|cause| {
                    cause
                        .to_string()
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        } else {
            checked.clone()
        }
    })?;
    let fill =
        |doc: &str, escape: Escape| sample.fill(config, doc, escape, "preview-not-a-real-link");
    Ok(Preview {
        slug: compiled.slug.clone(),
        title: compiled.edition.title.clone(),
        html: fill(&compiled.html, Escape::Html),
        text: fill(&compiled.text, Escape::None),
        subject: compiled.subject.clone(),
        warnings: checked,
    })
}

/// What the watcher looks at: name, size and modification time of each file.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    for path in paths {
        let mut add = |p: PathBuf| {
            let meta = std::fs::metadata(&p).ok();
            out.push((
                p,
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            ));
        };
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            entries.into_iter().for_each(&mut add);
        } else {
            add(path.clone());
        }
    }
    out
}

struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stop: watch::Receiver<bool>,
}

/// Runs the preview server until Ctrl-C or SIGTERM.
pub fn run(config: &Config, edition_arg: &str, listen: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config.clone(), edition_arg.to_string(), listen))
}

async fn serve(config: Config, edition_arg: String, listen: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the preview listens on {addr}, not only on this machine: it shows the first editor's name and address to anyone who can reach it"
        );
    }
    let watched = vec![
        edition::resolve(&config, &edition_arg),
        config.templates_dir(),
        config.list_path(&config.newsletter.editors),
    ];
    let first = {
        let (config, arg) = (config.clone(), edition_arg.clone());
        tokio::task::spawn_blocking(move || build(&config, &arg)).await?
    };
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        generation: 1,
        result: first,
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    println!("previewing {edition_arg} at http://{addr}/ (Ctrl-C to stop)");
    tokio::spawn(watch_files(
        config,
        edition_arg,
        watched,
        tx,
        stop_rx.clone(),
    ));

    let shared = Arc::new(Shared {
        snapshots: rx,
        stop: stop_rx,
    });
    let app = Router::new()
        .route("/", get(shell))
        .route("/email.html", get(email_html))
        .route("/email.txt", get(email_txt))
        .route("/changes", get(changes))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Ends the watcher and the waiting long-polls, so shutdown is prompt.
            let _ = stop_tx.send(true);
        })
        .await
        .context("the preview server failed")?;
    println!("preview stopped");
    Ok(())
}

async fn watch_files(
    config: Config,
    edition_arg: String,
    watched: Vec<PathBuf>,
    tx: watch::Sender<Arc<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = fingerprint(&watched);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        let now = fingerprint(&watched);
        if now == seen {
            continue;
        }
        seen = now;
        let (c, arg) = (config.clone(), edition_arg.clone());
        let Ok(result) = tokio::task::spawn_blocking(move || build(&c, &arg)).await else {
            continue;
        };
        match &result {
            Ok(p) => eprintln!("rebuilt {}", p.slug),
            Err(e) => eprintln!("rebuild failed:\n{}", e.join("\n")),
        }
        let generation = tx.borrow().generation + 1;
        let _ = tx.send(Arc::new(Snapshot { generation, result }));
    }
}

#[derive(Deserialize)]
struct ShellQuery {
    width: Option<u32>,
}

async fn shell(State(s): State<Arc<Shared>>, Query(q): Query<ShellQuery>) -> Response {
    let width = q.width.filter(|w| WIDTHS.contains(w)).unwrap_or(WIDTHS[1]);
    let snapshot = s.snapshots.borrow().clone();
    no_store(Html(page::shell(&snapshot, width)).into_response())
}

async fn email_html(State(s): State<Arc<Shared>>) -> Response {
    let snapshot = s.snapshots.borrow().clone();
    let body = match &snapshot.result {
        Ok(p) => p.html.clone(),
        Err(errors) => page::error_document(errors),
    };
    no_store(Html(body).into_response())
}

async fn email_txt(State(s): State<Arc<Shared>>) -> Response {
    let snapshot = s.snapshots.borrow().clone();
    let body = match &snapshot.result {
        Ok(p) => p.text.clone(),
        Err(errors) => errors.join("\n"),
    };
    no_store(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

#[derive(Deserialize)]
struct ChangesQuery {
    since: Option<u64>,
}

/// Long poll: answers with the current generation as soon as it differs from
/// `since`, or after [`LONG_POLL`] (the page then asks again).
async fn changes(State(s): State<Arc<Shared>>, Query(q): Query<ChangesQuery>) -> Response {
    let mut rx = s.snapshots.clone();
    let mut stop = s.stop.clone();
    let since = q.since.unwrap_or(0);
    let wait = async {
        loop {
            if rx.borrow_and_update().generation != since {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = wait => {}
        _ = tokio::time::sleep(LONG_POLL) => {}
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    let generation = rx.borrow().generation;
    no_store(
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            generation.to_string(),
        )
            .into_response(),
    )
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
