//! `brief subscribers list|add|remove|import|export`: the managed lists by hand. What
//! the editors add counts as confirmed, so each addition carries their attestation of
//! the reader's consent (`--consent`, or an import's `consent` column).

use crate::cli::{SubscribersAction, SubscribersArgs, SubscribersShowArgs};
use anyhow::{bail, Result};
use brief::audience::{normalize_address, ListReader};
use brief::clock;
use brief::config::Config;
use brief::exit::{Outcome, UsageError};
use brief::store::{Addition, Consent, Reader, Store};
use serde::Serialize;

pub(super) fn run(config: &Config, args: SubscribersArgs) -> Result<Outcome> {
    match args.action {
        SubscribersAction::List(show) => list(config, &show, false),
        SubscribersAction::Export(show) => list(config, &show, true),
        SubscribersAction::Add {
            addresses,
            list,
            name,
            consent,
        } => add(config, &addresses, &list, name.as_deref(), &consent),
        SubscribersAction::Remove { addresses, list } => {
            remove(config, &addresses, list.as_deref())
        }
        SubscribersAction::Import {
            file,
            list,
            consent,
        } => import(config, &file, &list, consent.as_deref()),
    }
}

/// A list the command may change: declared in `[lists]`.
fn managed(config: &Config, list: &str) -> Result<()> {
    if config.managed_list(list).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = config.lists.keys().map(String::as_str).collect();
    Err(UsageError(if known.is_empty() {
        format!("`{list}` is not a managed list: declare it as [lists.{list}] in brief.toml (with a title)")
    } else {
        format!(
            "`{list}` is not a managed list (managed lists: {})",
            known.join(", ")
        )
    })
    .into())
}

fn attestation(text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(UsageError(
            "--consent must say how the readers agreed (one line of text)".into(),
        )
        .into());
    }
    Ok(text.to_string())
}

fn add(
    config: &Config,
    addresses: &[String],
    list: &str,
    name: Option<&str>,
    consent: &str,
) -> Result<Outcome> {
    managed(config, list)?;
    let text = attestation(consent)?;
    if name.is_some() && addresses.len() > 1 {
        return Err(UsageError("--name goes with a single address".into()).into());
    }
    let mut valid = Vec::new();
    for a in addresses {
        match normalize_address(a) {
            Ok(address) => valid.push(address),
            Err(why) => bail!("{why} (nothing was changed)"),
        }
    }
    let store = Store::for_config(config)?;
    let lists = [list.to_string()];
    store.transaction(|store| {
        for address in &valid {
            store.add_reader(&Addition {
                address,
                name,
                fields: None,
                lists: &lists,
                consent: Consent {
                    at: clock::now(),
                    form: "cli".into(),
                    lists: lists.to_vec(),
                    text: text.clone(),
                },
            })?;
            if store.is_suppressed(address)? {
                eprintln!("note: {address} is on the suppression list and is not mailed until `brief resubscribe {address}`");
            }
        }
        Ok(())
    })?;
    for address in &valid {
        outln!("added {address} to {list}");
    }
    Ok(Outcome::Done)
}

fn remove(config: &Config, addresses: &[String], list: Option<&str>) -> Result<Outcome> {
    if let Some(l) = list {
        managed(config, l)?;
    }
    let lists: Vec<String> = match list {
        Some(l) => vec![l.to_string()],
        None => config.lists.keys().cloned().collect(),
    };
    let store = Store::for_config(config)?;
    let removed = store.transaction(|store| {
        let mut out = Vec::new();
        for address in addresses {
            for l in &lists {
                if store.remove_membership(address, l)? {
                    out.push(format!("removed {} from {l}", address.trim()));
                }
            }
        }
        Ok(out)
    })?;
    if removed.is_empty() {
        outln!("no change: not on {}", lists.join(", "));
    }
    for line in removed {
        outln!("{line}");
    }
    Ok(Outcome::Done)
}

fn import(
    config: &Config,
    file: &std::path::Path,
    list: &str,
    consent: Option<&str>,
) -> Result<Outcome> {
    managed(config, list)?;
    let fallback = consent.map(attestation).transpose()?;
    let mut reader = ListReader::open(file)?;
    let columns = reader.columns();
    let consent_col = columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case("consent"));
    if consent_col.is_none() && fallback.is_none() {
        return Err(UsageError(format!(
            "{} has no `consent` column: add one (how each reader agreed) or give --consent TEXT for every row",
            file.display()
        ))
        .into());
    }
    let store = Store::for_config(config)?;
    let lists = [list.to_string()];
    let (mut imported, mut skipped) = (0u64, 0u64);
    store.transaction(|store| {
        while let Some(row) = reader.next_row() {
            let s = match row {
                Ok(s) => s,
                Err(d) => {
                    eprintln!("{d} (skipped)");
                    skipped += 1;
                    continue;
                }
            };
            let attested = consent_col
                .and_then(|i| s.fields.get(i))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .or_else(|| fallback.clone());
            let Some(text) = attested else {
                eprintln!(
                    "{}:{}: {} has no consent attestation (skipped)",
                    file.display(),
                    s.line,
                    s.email
                );
                skipped += 1;
                continue;
            };
            let fields: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .zip(&s.fields)
                .enumerate()
                .filter(|(i, _)| Some(*i) != consent_col)
                .map(|(_, (c, v))| (c.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let fields = serde_json::Value::Object(fields).to_string();
            store.add_reader(&Addition {
                address: &s.email,
                name: (!s.name.is_empty()).then_some(s.name.as_str()),
                fields: Some(&fields),
                lists: &lists,
                consent: Consent {
                    at: clock::now(),
                    form: "import".into(),
                    lists: lists.to_vec(),
                    text,
                },
            })?;
            imported += 1;
        }
        Ok(())
    })?;
    outln!("imported {imported} reader(s) into {list}, skipped {skipped}");
    Ok(Outcome::Done)
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    reader: &'a Reader,
    consents: Vec<Consent>,
}

fn list(config: &Config, show: &SubscribersShowArgs, export: bool) -> Result<Outcome> {
    if let Some(l) = &show.list {
        managed(config, l)?;
    }
    let Some(store) = Store::existing_for_config(config)?.filter(Store::manages_lists) else {
        if show.json {
            outln!("[]");
        } else if export || show.csv {
            outln!("email,name,lists,confirmed_at,consent");
        }
        return Ok(Outcome::Done);
    };
    let readers = store.readers(show.list.as_deref())?;
    if show.json {
        let rows = readers
            .iter()
            .map(|r| {
                Ok(Row {
                    reader: r,
                    consents: store.consents(&r.address)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if export || show.csv {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(["email", "name", "lists", "confirmed_at", "consent"])?;
        for r in &readers {
            let consent = store
                .consents(&r.address)?
                .last()
                .map(|c| c.text.clone())
                .unwrap_or_default();
            out.write_record([
                r.address.as_str(),
                r.name.as_str(),
                &r.lists.join(" "),
                &r.confirmed_at.to_rfc3339(),
                &consent,
            ])?;
        }
        let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        outln!("{}", String::from_utf8_lossy(&bytes).trim_end());
    } else {
        for r in &readers {
            outln!(
                "{}\t{}\t{}\t{}",
                r.address,
                r.name,
                r.lists.join(","),
                r.confirmed_at.to_rfc3339()
            );
        }
    }
    Ok(Outcome::Done)
}
