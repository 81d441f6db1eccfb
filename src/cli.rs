//! The command line (clap derive only; behaviour lives in `cmd/`).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "brief",
    version,
    about = "Compose, compile and deliver an email newsletter."
)]
pub(crate) struct Cli {
    /// The newsletter's configuration file.
    #[arg(long, global = true, default_value = "brief.toml", value_name = "PATH")]
    pub config: PathBuf,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Scaffold a working newsletter folder.
    Init(InitArgs),
    /// Validate config, templates, editions and lists; print every problem.
    Check(CheckArgs),
    /// Compose and compile an edition into email.mjml, email.html and email.txt.
    Build(BuildArgs),
    /// Send an edition to its audience (resumable), or a test to the editors.
    Send(SendArgs),
    /// For cron: send or resume every edition whose send_at has passed.
    Dispatch(DispatchArgs),
    /// Per-edition counts from the journal.
    Status(StatusArgs),
    /// Serve the unsubscribe endpoint (RFC 8058 one-click) and the web archive.
    Serve(ServeArgs),
    /// Add addresses to the suppression list.
    Unsubscribe(UnsubscribeArgs),
    /// Remove addresses from the suppression list.
    Resubscribe(ResubscribeArgs),
    /// List or export the suppression list.
    Suppressions(SuppressionsArgs),
    /// The managed lists ([lists.<name>]): list, add, remove, import, export readers.
    Subscribers(SubscribersArgs),
    /// Read the bounce mailbox: classify every message and apply the [bounces] policy.
    Bounces(BouncesArgs),
    /// Write a static web archive of the editions, with an Atom feed.
    Archive(ArchiveArgs),
    /// Live-reloading local preview of an edition.
    Preview(PreviewArgs),
    /// Add a dated correction to a sent edition (archive page, Atom entry), and mail it
    /// to the readers who received the edition.
    Correct(CorrectArgs),
    /// Look up SPF, DKIM, DMARC and MX for the newsletter; print the records to publish.
    Doctor(DoctorArgs),
    /// The state store: copy it to another store (SQLite to PostgreSQL and back).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Reports from the store.
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy every table of the configured store ([state]) into another, empty one.
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StoreCopyArgs {
    /// The target: a PostgreSQL URL (postgres://USER@HOST:PORT/DB) or a SQLite file.
    #[arg(long, value_name = "URL|PATH")]
    pub to: String,
    /// The variable holding the target database's password (default: [state] password_env).
    #[arg(long, value_name = "NAME")]
    pub password_env: Option<String>,
    /// Delete what the target holds first (without it, a target with any state is refused).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Per edition and sponsor: delivered, readers' clicks per link, click-through,
    /// machine clicks apart (`[tracking]`).
    Sponsors(SponsorsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SponsorsArgs {
    /// Only this edition (slug or path).
    #[arg(long, value_name = "E", conflicts_with = "since")]
    pub edition: Option<String>,
    /// Only editions whose send started on or after this day (YYYY-MM-DD, UTC) or
    /// instant (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with_all = ["csv", "html"])]
    pub json: bool,
    /// Print CSV, one row per edition and link.
    #[arg(long, conflicts_with = "html")]
    pub csv: bool,
    /// Print a self-contained HTML page (inline chart, no script, nothing loaded).
    #[arg(long)]
    pub html: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Folder to create (default: the current folder).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Check only this edition (slug or path); default: every edition.
    #[arg(long, value_name = "E")]
    pub edition: Option<String>,
    /// Print the problems as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The edition (slug or path).
    #[arg(long, value_name = "E")]
    pub edition: String,
    /// Output folder (default: dist/<slug>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The edition (slug or path).
    #[arg(long, value_name = "E")]
    pub edition: String,
    /// Test send: to the editors list (or only the --to addresses), subject prefixed [TEST].
    #[arg(long)]
    pub test: bool,
    /// With --test: send only to these addresses (repeatable).
    #[arg(long, value_name = "ADDR", requires = "test")]
    pub to: Vec<String>,
    /// Also resend recipients whose outcome is unknown, with the same Message-ID.
    #[arg(long)]
    pub resend_in_doubt: bool,
    /// Render every message and report what would be sent; no connection, nothing recorded.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DispatchArgs {
    /// Also send editions more than delivery.max_lateness late.
    #[arg(long)]
    pub allow_late: bool,
    /// Wait for a running dispatch to finish instead of exiting 75.
    #[arg(long)]
    pub wait: bool,
    /// Report what would be sent without sending.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Only this edition (slug or path).
    #[arg(long, value_name = "E")]
    pub edition: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// List the addresses in one state (sent, deferred, bounced, in_doubt, pending, expired, ...).
    #[arg(long, value_name = "STATE", requires = "edition")]
    pub recipients: Option<String>,
    /// Look at the test-send journal instead of the real one.
    #[arg(long)]
    pub test: bool,
    /// Only the managed lists: confirmed readers and pending signups per list.
    #[arg(long, conflicts_with_all = ["edition", "test"])]
    pub lists: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default: unsubscribe.listen from the config).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UnsubscribeArgs {
    /// Addresses to suppress.
    #[arg(value_name = "ADDR")]
    pub addresses: Vec<String>,
    /// Apply the unsubscribe requests found in this maildir (mail sent to the mailto address).
    #[arg(long, value_name = "DIR")]
    pub from_maildir: Option<PathBuf>,
    /// Apply the unsubscribe requests found in this mbox file.
    #[arg(long, value_name = "FILE")]
    pub from_mbox: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ResubscribeArgs {
    /// Addresses to remove from the suppression list.
    #[arg(value_name = "ADDR", required = true)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SuppressionsArgs {
    /// Print as JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print as CSV (for export).
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SubscribersArgs {
    #[command(subcommand)]
    pub action: SubscribersAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubscribersAction {
    /// Print the confirmed readers of the managed lists (or of one).
    List(SubscribersShowArgs),
    /// Add readers to a managed list as confirmed; you attest their consent.
    Add {
        #[arg(value_name = "ADDR", required = true)]
        addresses: Vec<String>,
        #[arg(long, value_name = "L")]
        list: String,
        /// Their name (with a single address).
        #[arg(long)]
        name: Option<String>,
        /// How they agreed (recorded as their consent), e.g. "signed up at the 2026 fair".
        #[arg(long, value_name = "TEXT")]
        consent: String,
    },
    /// Take readers off one managed list, or off every one.
    Remove {
        #[arg(value_name = "ADDR", required = true)]
        addresses: Vec<String>,
        #[arg(long, value_name = "L")]
        list: Option<String>,
    },
    /// Import a CSV (email, name, consent, any other column) into a managed list.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_name = "L")]
        list: String,
        /// The consent attestation of rows whose `consent` column is empty or missing.
        #[arg(long, value_name = "TEXT")]
        consent: Option<String>,
    },
    /// Export the readers as CSV (default) or JSON, with their consent records.
    Export(SubscribersShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SubscribersShowArgs {
    /// Only this managed list.
    #[arg(long, value_name = "L")]
    pub list: Option<String>,
    /// Print as JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print as CSV.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BouncesArgs {
    /// Read the messages in this maildir's new/ (moved to cur/ once processed).
    #[arg(long, value_name = "DIR", required_unless_present = "from_mbox")]
    pub from_maildir: Option<PathBuf>,
    /// Read the messages of this mbox file.
    #[arg(long, value_name = "FILE")]
    pub from_mbox: Option<PathBuf>,
    /// Classify and print; change nothing (no counts, no suppressions, no moves).
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON Lines, one object per finding, and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveArgs {
    /// Output folder (default: archive.out from the config).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Include every edition, not only those sent or due.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CorrectArgs {
    /// The corrected edition (slug or path).
    #[arg(long, value_name = "E")]
    pub edition: String,
    /// The correction note (Markdown).
    #[arg(long, value_name = "FILE")]
    pub note: PathBuf,
    /// Also mail the correction to every reader the journal shows as having accepted the
    /// edition (minus those suppressed since); resumable and exactly-once.
    #[arg(long)]
    pub mail: bool,
    /// Record nothing and send nothing: show what would be recorded and sent.
    #[arg(long)]
    pub dry_run: bool,
    /// Mail the correction message to the editors (or --to) only, subject prefixed
    /// [TEST]; the correction is not recorded.
    #[arg(long, requires = "mail")]
    pub test: bool,
    /// With --test: send only to these addresses (repeatable).
    #[arg(long, value_name = "ADDR", requires = "test")]
    pub to: Vec<String>,
    /// Also resend recipients whose outcome is unknown, with the same Message-ID.
    #[arg(long, requires = "mail")]
    pub resend_in_doubt: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    /// The edition (slug or path).
    #[arg(long, value_name = "E")]
    pub edition: String,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8026")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Also fetch a test unsubscribe link and check the one-click POST (RFC 8058).
    #[arg(long)]
    pub online: bool,
    /// Ask this DNS server instead of the system's resolvers.
    #[arg(long, value_name = "ADDR:PORT")]
    pub nameserver: Option<std::net::SocketAddr>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own consistency checks (conflicting names, bad defaults, missing value
    /// names) run only when a command is built; this builds every subcommand once.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
