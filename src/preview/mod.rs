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
use crate::serve::http::{self, Body};
use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the watcher looks at the files.
const POLL: Duration = Duration::from_millis(300);
/// How long `/changes` holds a request before answering "nothing new".
const LONG_POLL: Duration = Duration::from_secs(25);

/// A preview shows one person at a time.
const LIMITS: http::Limits = http::Limits {
    max_connections: 256,
    per_client: 256,
    head_timeout: Duration::from_secs(10),
    max_head: 16 * 1024,
    drain_timeout: Duration::from_secs(5),
};

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
    /// Where it listens: the only `Host` it answers (see [`host_allowed`]).
    addr: SocketAddr,
}

/// Runs the preview server until Ctrl-C or SIGTERM.
pub fn run(config: &Config, edition_arg: &str, listen: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        serve(
            config.clone(),
            edition_arg.to_string(),
            listener,
            http::shutdown_signal(),
        )
        .await
    })
}

async fn serve(
    config: Config,
    edition_arg: String,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
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
        addr,
    });
    let handler = move |_peer, req| {
        let shared = shared.clone();
        async move { route(&shared, &req).await }
    };
    let stopping = async {
        shutdown.await;
        // Ends the watcher and the waiting long-polls, so shutdown is prompt.
        let _ = stop_tx.send(true);
    };
    http::run(listener, stopping, LIMITS, handler)
        .await
        .context("the preview server failed")?;
    println!("preview stopped");
    Ok(())
}

/// Whether a `Host` header names this server listening on `addr`: its address, or
/// `localhost`, `127.0.0.1` and `[::1]` when it listens on loopback; any IP address
/// when it listens on all of them (an address, unlike a name, cannot be rebound to
/// 127.0.0.1 by a DNS-rebinding page). Always with its port.
fn host_allowed(addr: SocketAddr, host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(addr.port()) {
        return false;
    }
    let ip = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>();
    let listen = addr.ip();
    match ip {
        Ok(_) if listen.is_unspecified() => true,
        Ok(ip) => ip == listen || (listen.is_loopback() && ip.is_loopback()),
        Err(_) => name == "localhost" && (listen.is_loopback() || listen.is_unspecified()),
    }
}

async fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_allowed(shared.addr, host) {
        return http::response(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain; charset=utf-8",
            "this preview answers only at the address it listens on\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = http::response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n",
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let query = |name: &str| -> Option<u64> {
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let snapshot = shared.snapshots.borrow().clone();
    match req.uri().path() {
        "/" => {
            let width = query("width")
                .and_then(|w| u32::try_from(w).ok())
                .filter(|w| WIDTHS.contains(w))
                .unwrap_or(WIDTHS[1]);
            html(page::shell(&snapshot, width))
        }
        "/email.html" => html(match &snapshot.result {
            Ok(p) => p.html.clone(),
            Err(errors) => page::error_document(errors),
        }),
        "/email.txt" => text(match &snapshot.result {
            Ok(p) => p.text.clone(),
            Err(errors) => errors.join("\n"),
        }),
        "/changes" => text(
            changes(shared, query("since").unwrap_or(0))
                .await
                .to_string(),
        ),
        _ => http::response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
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

fn html(body: String) -> Response<Body> {
    http::response(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn text(body: String) -> Response<Body> {
    http::response(StatusCode::OK, "text/plain; charset=utf-8", body)
}

/// Long poll: the current generation as soon as it differs from `since`, or after
/// [`LONG_POLL`] (the page then asks again).
async fn changes(shared: &Shared, since: u64) -> u64 {
    let mut rx = shared.snapshots.clone();
    let mut stop = shared.stop.clone();
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
    generation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_hosts() {
        let loopback: SocketAddr = "127.0.0.1:8026".parse().unwrap();
        for good in [
            "127.0.0.1:8026",
            "localhost:8026",
            "LocalHost:8026",
            "[::1]:8026",
        ] {
            assert!(host_allowed(loopback, good), "{good}");
        }
        for bad in [
            "evil.example:8026",
            "localhost",
            "localhost:8027",
            "127.0.0.1.nip.io:8026",
            "192.0.2.1:8026",
            "",
        ] {
            assert!(!host_allowed(loopback, bad), "{bad}");
        }
        let everywhere: SocketAddr = "0.0.0.0:8026".parse().unwrap();
        assert!(host_allowed(everywhere, "192.0.2.1:8026"));
        assert!(host_allowed(everywhere, "localhost:8026"));
        assert!(!host_allowed(everywhere, "evil.example:8026"));
        let lan: SocketAddr = "192.0.2.1:8026".parse().unwrap();
        assert!(host_allowed(lan, "192.0.2.1:8026"));
        assert!(!host_allowed(lan, "localhost:8026"));
    }
}
