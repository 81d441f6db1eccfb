//! Prints unsubscribe tokens for made-up addresses, one per line, for benchmarks
//! (scripts/bench-serve.sh). Not part of the `brief` command line on purpose.
//!
//! cargo run --release --example tokens -- LIST_ID COUNT [EDITION]
//! The secret is read from $BRIEF_SECRET, as `brief serve` reads it.

use brief::token::Keyring;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tokens LIST_ID COUNT [EDITION]  (secret from $BRIEF_SECRET)";
    let list_id = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let count: usize = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let edition = args.next().unwrap_or_else(|| "bench".into());
    let secret = std::env::var("BRIEF_SECRET")
        .map_err(|_| anyhow::anyhow!("set BRIEF_SECRET (the secret brief serve uses)"))?;
    let keyring = Keyring::new(secret.as_bytes(), &list_id);
    let mut out = String::new();
    for i in 0..count {
        out.push_str(&keyring.issue(&format!("reader{i}@bench.example.org"), &edition, false));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
