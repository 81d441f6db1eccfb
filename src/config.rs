//! `brief.toml`: the newsletter's configuration. Strict: an unknown key is an error
//! naming file, line, column and the nearest known key. Everything optional has a
//! default; secrets are read only from environment variables the config names.

use crate::clock::parse_duration;
use crate::diag::{from_toml_strict, Diagnostic};
use anyhow::{bail, Context, Result};
use lettre::message::Mailbox;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub newsletter: Newsletter,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default)]
    pub smtp: Smtp,
    #[serde(default)]
    pub unsubscribe: Unsubscribe,
    pub dkim: Option<Dkim>,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub archive: Archive,
    #[serde(default)]
    pub bounces: Bounces,
    /// Provider webhooks (`brief serve`'s `/hooks/<provider>`); a provider left out answers 404.
    #[serde(default)]
    pub hooks: Hooks,
    /// `[lists.<name>]`: lists kept in the state store (signups, `brief subscribers`)
    /// instead of `subscribers/<name>.csv`. A name is one or the other, never both.
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, ManagedList>,
    /// `[signup]`: `brief serve`'s signup form, double opt-in and preference centre.
    #[serde(default)]
    pub signup: Signup,
    /// Opt-in click counting for sponsor reports (`brief serve`'s `/c/<token>`).
    #[serde(default)]
    pub tracking: Tracking,
    /// The folder that holds brief.toml; relative paths are resolved against it.
    #[serde(skip)]
    pub root: PathBuf,
    /// Where the config was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Newsletter {
    pub name: String,
    pub from: String,
    pub reply_to: Option<String>,
    pub list_id: String,
    pub base_url: String,
    pub postal_address: String,
    #[serde(default = "default_audience")]
    pub audience: Vec<String>,
    #[serde(default = "default_editors")]
    pub editors: String,
    /// Default heading of the roundup section.
    #[serde(default = "default_roundup_title")]
    pub roundup_title: String,
    /// Default heading of the agenda section.
    #[serde(default = "default_agenda_title")]
    pub agenda_title: String,
    /// Language of the HTML (`<html lang>`).
    #[serde(default = "default_language")]
    pub language: String,
    /// `from` and `reply_to`, parsed once when the config is loaded.
    #[serde(skip)]
    mailboxes: Option<(Mailbox, Option<Mailbox>)>,
}

impl Newsletter {
    /// The From mailbox.
    pub fn from_mailbox(&self) -> &Mailbox {
        &self.parsed().0
    }

    /// Where readers' replies go: `reply_to`, else From.
    pub fn contact_mailbox(&self) -> &Mailbox {
        let (from, reply_to) = self.parsed();
        reply_to.as_ref().unwrap_or(from)
    }

    fn parsed(&self) -> &(Mailbox, Option<Mailbox>) {
        self.mailboxes
            .as_ref()
            .expect("Config::parse sets the mailboxes")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Outbox,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    #[serde(default = "default_transport")]
    pub transport: Transport,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub rate_per_second: f64,
    #[serde(default = "d_6h", deserialize_with = "duration")]
    pub max_lateness: Duration,
    #[serde(default = "d_5m", deserialize_with = "duration")]
    pub retry_min: Duration,
    #[serde(default = "d_1h", deserialize_with = "duration")]
    pub retry_max: Duration,
    #[serde(default = "d_2d", deserialize_with = "duration")]
    pub give_up_after: Duration,
    /// Send a short report to the editors when an edition finishes or stops.
    #[serde(default = "yes")]
    pub report: bool,
    /// Folder of the `outbox` transport (one sub-folder per edition).
    #[serde(default = "default_outbox")]
    pub outbox: PathBuf,
    /// The SMTP envelope sender (where bounces go); default: the From address.
    pub return_path: Option<String>,
    /// VERP: each message's envelope sender is `local+TOKEN@domain` of the return path,
    /// TOKEN the local part of its keyed Message-ID (opaque, no address in clear).
    #[serde(default)]
    pub verp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_tls")]
    pub tls: Tls,
    #[serde(default)]
    pub username: String,
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// Name sent in EHLO; default: the machine's host name.
    pub hello_name: Option<String>,
    /// How long to wait for any one server reply.
    #[serde(default = "d_60s", deserialize_with = "duration")]
    pub timeout: Duration,
    /// How long to wait for the reply to the message's final dot (RFC 5321
    /// 4.5.3.2.6: 10 minutes; giving up earlier puts a delivered message in doubt).
    #[serde(default = "d_10m", deserialize_with = "duration")]
    pub data_timeout: Duration,
    /// Allow AUTH without TLS; accepted only for a relay on a loopback address.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// PEM file of the CA certificates that sign the relay's certificate (a private
    /// relay with its own CA); when set, it replaces the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// `[bounces]`: how many bounces or complaints suppress an address (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bounces {
    /// Hard bounces (in different editions) before suppression.
    pub hard: u32,
    /// Soft bounces in a row (editions with no delivery between) before suppression.
    pub soft: u32,
    pub complaint: u32,
}

impl Default for Bounces {
    fn default() -> Bounces {
        Bounces {
            hard: 1,
            soft: 3,
            complaint: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// A retired secret: links signed with it keep working until
    /// `previous_secret_expires` (RFC 3339), so the secret can be rotated.
    pub previous_secret_env: Option<String>,
    pub previous_secret_expires: Option<toml::value::Datetime>,
    pub mailto: Option<String>,
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `brief serve`: requests per second allowed per client address (a token bucket);
    /// 0 turns the limit off.
    #[serde(default = "default_client_rate")]
    pub client_rate: f64,
    /// `brief serve`: how many requests a client may make at once before the rate applies.
    #[serde(default = "default_client_burst")]
    pub client_burst: u32,
    /// `brief serve`: connections served at once (more wait in the kernel's backlog);
    /// one client address may hold a 32nd of them.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
    /// More keys, each adding its own signature (e.g. RSA next to Ed25519).
    #[serde(default)]
    pub keys: Vec<DkimKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub selector: String,
    pub key_file: PathBuf,
    /// Default: `[dkim] domain`.
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The SQLite file (used when `url` is unset).
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// A PostgreSQL store instead: `postgres://USER@HOST:PORT/DB` (TLS when it says
    /// `sslmode=require` or `verify-full`). Several senders can then share one send.
    pub url: Option<String>,
    /// The environment variable that holds the database password (never the config).
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Where `brief archive` writes the site and `brief serve` serves it from.
    #[serde(default = "default_archive_out")]
    pub out: PathBuf,
    /// Where the archive's "Subscribe" links point (a sign-up page); default: a
    /// `mailto:` to `newsletter.reply_to` (or the `from` address) asking to subscribe.
    pub subscribe_url: Option<String>,
}

/// `[hooks]`: which provider webhooks `brief serve` accepts, and their secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Environment variable holding Mailgun's HTTP webhook signing key.
    pub mailgun_signing_key_env: Option<String>,
    /// User name of Postmark's webhook basic authentication.
    pub postmark_user: Option<String>,
    /// Environment variable holding the password of Postmark's basic authentication.
    pub postmark_password_env: Option<String>,
    /// SendGrid's signed event webhook verification key (PEM or the console's base64).
    pub sendgrid_public_key: Option<PathBuf>,
    /// The SNS topic that carries SES notifications; others are refused.
    pub ses_topic_arn: Option<String>,
}

/// `[lists.<name>]`: a list brief manages in its store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedList {
    /// What readers see on the signup form and in the preference centre.
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Offered on the signup form and in the preference centre; a private list is
    /// filled only by `brief subscribers add|import`.
    #[serde(default = "yes")]
    pub public: bool,
}

/// `[signup]`: double opt-in and its abuse limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    /// How long a confirmation link works.
    #[serde(default = "d_2d", deserialize_with = "duration")]
    pub confirm_within: Duration,
    /// The consent text shown above the button and recorded with each confirmation.
    pub consent_text: Option<String>,
    /// Send `templates/welcome.txt.hbs` (or the built-in welcome) after a confirmation.
    #[serde(default = "yes")]
    pub welcome: bool,
    /// Origins (`https://www.example.org`) allowed to call `POST …/api/subscribe` from a
    /// browser (CORS); other sites' pages get no CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Signup requests per second allowed per client address (a token bucket, on top
    /// of `[unsubscribe] client_rate`).
    #[serde(default = "default_signup_rate")]
    pub client_rate: f64,
    #[serde(default = "default_signup_burst")]
    pub client_burst: u32,
    /// Unconfirmed signups (unexpired) one address may have; beyond it, no more mail.
    #[serde(default = "default_pending_per_address")]
    pub max_pending_per_address: u32,
    /// Unconfirmed signups (unexpired) one client address may have started.
    #[serde(default = "default_pending_per_client")]
    pub max_pending_per_client: u32,
    /// Proof of work asked of the form (leading zero bits of a SHA-256); 0: none.
    #[serde(default)]
    pub proof_of_work: u8,
}

impl Signup {
    pub fn consent_text(&self, newsletter: &str) -> String {
        self.consent_text.clone().unwrap_or_else(|| {
            format!("I want to receive {newsletter} by email. I can unsubscribe at any time with the link in every message.")
        })
    }
}

impl Default for Signup {
    fn default() -> Self {
        toml::from_str("").expect("all signup keys have defaults")
    }
}
fn default_signup_rate() -> f64 {
    0.1
}
fn default_signup_burst() -> u32 {
    5
}
fn default_pending_per_address() -> u32 {
    3
}
fn default_pending_per_client() -> u32 {
    20
}
/// `[tracking]`: opt-in click counting (docs/tracking.md says what is kept and for how
/// long). Off by default: no link is rewritten and nothing is counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// Rewrite the links of `sections` to go through `brief serve` and count clicks.
    #[serde(default)]
    pub enabled: bool,
    /// Which sections' links are tracked: `sponsor` (the default), `essay`, `roundup`,
    /// `agenda`, `read_more`, or `all`.
    #[serde(default = "default_tracked_sections")]
    pub sections: Vec<TrackedSection>,
    /// UTM parameters added to sponsor links (tracked or not); none when unset.
    pub utm_source: Option<String>,
    #[serde(default = "default_utm_medium")]
    pub utm_medium: String,
    /// Default: the edition's slug; `{edition}` is replaced by the slug.
    pub utm_campaign: Option<String>,
    /// Clicks are counted for this long after the send starts; then the per-edition
    /// set that tells unique clicks apart is dropped and the counts are final.
    #[serde(default = "d_30d", deserialize_with = "duration")]
    pub window: Duration,
    /// One client fetching this many different links of an edition within
    /// `burst_within` is a link scanner: those clicks are counted as machine clicks.
    #[serde(default = "default_burst_links")]
    pub burst_links: usize,
    #[serde(default = "d_10s", deserialize_with = "duration")]
    pub burst_within: Duration,
    /// More user-agent substrings (case-insensitive) counted as machines, besides the
    /// built-in list of mail security scanners.
    #[serde(default)]
    pub scanner_agents: Vec<String>,
}

/// A value of `[tracking] sections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackedSection {
    Sponsor,
    Essay,
    Roundup,
    Agenda,
    ReadMore,
    All,
}

impl Tracking {
    /// Whether compose changes any link: tracked links, or UTM parameters alone.
    pub fn changes_links(&self) -> bool {
        self.enabled || self.utm_source.is_some()
    }

    /// Whether links of `section` are rewritten (tracking on and the section chosen).
    pub fn tracks(&self, section: TrackedSection) -> bool {
        self.enabled
            && self
                .sections
                .iter()
                .any(|s| *s == section || *s == TrackedSection::All)
    }
}

impl Default for Tracking {
    fn default() -> Self {
        toml::from_str("").expect("all tracking keys have defaults")
    }
}

impl Default for Delivery {
    fn default() -> Self {
        toml::from_str("").expect("all delivery keys have defaults")
    }
}
impl Default for Smtp {
    fn default() -> Self {
        toml::from_str("").expect("all smtp keys have defaults")
    }
}
impl Default for Unsubscribe {
    fn default() -> Self {
        toml::from_str("").expect("all unsubscribe keys have defaults")
    }
}
impl Default for State {
    fn default() -> Self {
        toml::from_str("").expect("all state keys have defaults")
    }
}
impl Default for Archive {
    fn default() -> Self {
        toml::from_str("").expect("all archive keys have defaults")
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn default_audience() -> Vec<String> {
    vec!["readers".into()]
}
fn default_editors() -> String {
    "editors".into()
}
fn default_roundup_title() -> String {
    "The Roundup".into()
}
fn default_agenda_title() -> String {
    "Look out for".into()
}
fn default_language() -> String {
    "en".into()
}
fn default_transport() -> Transport {
    Transport::Outbox
}
fn default_concurrency() -> usize {
    8
}
fn d_10s() -> Duration {
    Duration::from_secs(10)
}
fn d_30d() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_tracked_sections() -> Vec<TrackedSection> {
    vec![TrackedSection::Sponsor]
}
fn default_utm_medium() -> String {
    "email".into()
}
fn default_burst_links() -> usize {
    3
}
fn d_60s() -> Duration {
    Duration::from_secs(60)
}
fn d_10m() -> Duration {
    Duration::from_secs(600)
}
fn d_5m() -> Duration {
    Duration::from_secs(300)
}
fn d_1h() -> Duration {
    Duration::from_secs(3600)
}
fn d_6h() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn d_2d() -> Duration {
    Duration::from_secs(2 * 86_400)
}
fn yes() -> bool {
    true
}
fn default_outbox() -> PathBuf {
    "outbox".into()
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    587
}
fn default_tls() -> Tls {
    Tls::Starttls
}
fn default_password_env() -> String {
    "BRIEF_SMTP_PASSWORD".into()
}
fn default_secret_env() -> String {
    "BRIEF_SECRET".into()
}
fn default_listen() -> String {
    "127.0.0.1:8025".into()
}
fn default_client_rate() -> f64 {
    10.0
}
fn default_client_burst() -> u32 {
    60
}
fn default_max_connections() -> usize {
    4096
}
fn default_state_path() -> PathBuf {
    "state/brief.db".into()
}
fn default_archive_out() -> PathBuf {
    "site".into()
}

impl Config {
    /// Reads and validates `path`. Errors carry file:line:column.
    pub fn load(path: &Path) -> Result<Config> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config = Config::parse(path, &source)?;
        config.path = path.to_path_buf();
        config.root = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(config)
    }

    /// Parses config text; `path` is used for messages only.
    pub fn parse(path: &Path, source: &str) -> Result<Config> {
        let mut config: Config = from_toml_strict(path, source, 0)?;
        config.newsletter.mailboxes = Some(config.validate(path, source)?);
        Ok(config)
    }

    /// Checks the values serde cannot, and returns the parsed From and Reply-To.
    fn validate(&self, path: &Path, source: &str) -> Result<(Mailbox, Option<Mailbox>)> {
        let at = |key: &str, msg: String| -> anyhow::Error {
            // Point at the key's line when we can find it.
            let offset = source.find(&format!("\n{key}")).map_or(0, |i| i + 1);
            Diagnostic::at_offset(path, source, offset, msg).into()
        };
        let n = &self.newsletter;
        let mailbox = |key: &str, v: &str| -> Result<Mailbox> {
            v.parse::<Mailbox>()
                .map_err(|_| at(key, format!("`{key}` is not a valid address: {v}")))
        };
        let from = mailbox("from", &n.from)?;
        let reply_to = n
            .reply_to
            .as_deref()
            .map(|v| mailbox("reply_to", v))
            .transpose()?;
        if !(n.base_url.starts_with("https://") || n.base_url.starts_with("http://")) {
            return Err(at(
                "base_url",
                "`base_url` must start with https:// or http://".into(),
            ));
        }
        if n.list_id.trim().is_empty()
            || n.list_id
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>')
        {
            return Err(at(
                "list_id",
                "`list_id` must be a dot-separated name without spaces or <>".into(),
            ));
        }
        if self.delivery.concurrency == 0 || self.delivery.concurrency > 256 {
            return Err(at(
                "concurrency",
                "`concurrency` must be between 1 and 256".into(),
            ));
        }
        if !(self.delivery.rate_per_second >= 0.0 && self.delivery.rate_per_second.is_finite()) {
            return Err(at(
                "rate_per_second",
                "`rate_per_second` must be 0 (unlimited) or more".into(),
            ));
        }
        if self.delivery.retry_min.is_zero() || self.delivery.retry_max < self.delivery.retry_min {
            return Err(at(
                "retry_max",
                "`retry_min` must be above 0 and `retry_max` at least `retry_min`".into(),
            ));
        }
        if !(self.unsubscribe.client_rate >= 0.0 && self.unsubscribe.client_rate.is_finite()) {
            return Err(at(
                "client_rate",
                "`client_rate` must be 0 (no limit) or more".into(),
            ));
        }
        if let Some(url) = &self.state.url {
            if let Err(why) = crate::store::check_url(url) {
                return Err(at("url", format!("`[state] url` {why}")));
            }
        }
        if self.unsubscribe.client_burst == 0 {
            return Err(at(
                "client_burst",
                "`client_burst` must be at least 1".into(),
            ));
        }
        if let Some(u) = &self.archive.subscribe_url {
            if !["https://", "http://", "mailto:"]
                .iter()
                .any(|p| u.starts_with(p))
            {
                return Err(at(
                    "subscribe_url",
                    "`subscribe_url` must start with https://, http:// or mailto:".into(),
                ));
            }
        }
        let t = &self.tracking;
        if t.window.is_zero() {
            return Err(at("window", "`tracking.window` must be above 0".into()));
        }
        if t.burst_links < 2 {
            return Err(at(
                "burst_links",
                "`tracking.burst_links` must be at least 2 (one link is what a reader clicks)"
                    .into(),
            ));
        }
        if t.enabled && t.sections.is_empty() {
            return Err(at(
                "sections",
                "`tracking.sections` is empty: name at least one section (e.g. [\"sponsor\"])"
                    .into(),
            ));
        }
        let utm = [
            ("utm_source", t.utm_source.as_deref()),
            ("utm_medium", Some(t.utm_medium.as_str())),
            ("utm_campaign", t.utm_campaign.as_deref()),
        ];
        for (key, value) in utm {
            if value.is_some_and(|v| v.trim().is_empty() || v.chars().any(char::is_control)) {
                return Err(at(
                    key,
                    format!("`tracking.{key}` must be a non-empty value on one line"),
                ));
            }
        }
        if let Some(m) = &self.unsubscribe.mailto {
            if m.parse::<lettre::Address>().is_err() {
                return Err(at(
                    "mailto",
                    format!("`mailto` is not a valid address: {m}"),
                ));
            }
        }
        for name in self.lists.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(at(
                    &format!("[lists.{name}]"),
                    format!("list name `{name}`: use lowercase letters, digits, - and _"),
                ));
            }
        }
        let s = &self.signup;
        if !(s.client_rate > 0.0 && s.client_rate.is_finite()) || s.client_burst == 0 {
            return Err(at(
                "client_rate",
                "[signup] `client_rate` must be above 0 and `client_burst` at least 1".into(),
            ));
        }
        if s.proof_of_work > 24 {
            return Err(at(
                "proof_of_work",
                "[signup] `proof_of_work` is a number of bits, at most 24".into(),
            ));
        }
        if let Some(o) = s
            .cors_origins
            .iter()
            .find(|o| !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/'))
        {
            return Err(at(
                "cors_origins",
                format!(
                    "[signup] `cors_origins`: `{o}` is not an origin like https://www.example.org"
                ),
            ));
        }
        Ok((from, reply_to))
    }

    /// A path from the config, resolved against the newsletter folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    pub fn editions_dir(&self) -> PathBuf {
        self.root.join("editions")
    }
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
    pub fn subscribers_dir(&self) -> PathBuf {
        self.root.join("subscribers")
    }
    pub fn list_path(&self, list: &str) -> PathBuf {
        self.subscribers_dir().join(format!("{list}.csv"))
    }
    /// The managed list `list`, if `[lists.<list>]` declares one.
    pub fn managed_list(&self, list: &str) -> Option<&ManagedList> {
        self.lists.get(list)
    }
    pub fn state_path(&self) -> PathBuf {
        self.resolve(&self.state.path)
    }

    /// Where the state store is: the PostgreSQL URL (password from
    /// `[state] password_env`), or the SQLite file.
    pub fn state_location(&self) -> Result<crate::store::Location> {
        let Some(url) = &self.state.url else {
            return Ok(crate::store::Location::Sqlite(self.state_path()));
        };
        let password = match &self.state.password_env {
            Some(name) => Some(std::env::var(name).map_err(|_| {
                anyhow::anyhow!("[state] password_env names ${name}, which is not set: export it with the database password")
            })?),
            None => None,
        };
        Ok(crate::store::Location::Postgres {
            url: url.clone(),
            password,
        })
    }
    pub fn outbox_dir(&self) -> PathBuf {
        self.resolve(&self.delivery.outbox)
    }

    /// The domain of the From address.
    pub fn from_domain(&self) -> String {
        self.newsletter.from_mailbox().email.domain().to_string()
    }

    /// The sender's domain (for Message-IDs): never a mailbox provider's.
    pub fn sender_domain(&self) -> String {
        crate::doctor::rules::message_id_domain(&self.from_domain(), &self.newsletter.base_url)
    }

    /// The HMAC secret for tokens and Message-IDs. With the outbox transport a missing
    /// secret falls back to a development key (with a warning), so a fresh clone runs;
    /// SMTP delivery and `brief serve` require a real one.
    pub fn secret(&self, allow_dev: bool) -> Result<Vec<u8>> {
        let name = &self.unsubscribe.secret_env;
        match std::env::var(name) {
            Ok(v) => match crate::token::weakness(v.as_bytes()) {
                Some(why) if allow_dev => {
                    tracing::warn!("the secret in ${name} {why}: fine for the outbox transport, not for real mail");
                    Ok(v.into_bytes())
                }
                Some(why) => bail!("the secret in ${name} {why}: {}", crate::token::HOW_TO_MAKE_A_SECRET),
                None => Ok(v.into_bytes()),
            },
            Err(_) if allow_dev => {
                tracing::warn!("${name} is not set: using an insecure development key (fine for the outbox transport, not for real mail)");
                Ok(crate::token::DEVELOPMENT_SECRET.to_vec())
            }
            Err(_) => bail!("set ${name} to a long random secret (e.g. `export {name}=$(openssl rand -base64 32)`); it signs unsubscribe links and Message-IDs"),
        }
    }

    /// The retired secret, if one is configured and set.
    pub fn previous_secret(&self) -> Option<Vec<u8>> {
        let name = self.unsubscribe.previous_secret_env.as_ref()?;
        std::env::var(name)
            .ok()
            .filter(|v| v.len() >= 16)
            .map(String::into_bytes)
    }

    /// When the retired secret stops verifying links: `previous_secret_expires` as an
    /// instant (a date alone means its midnight UTC; a time without offset is UTC).
    pub fn previous_secret_expiry(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let Some(dt) = &self.unsubscribe.previous_secret_expires else {
            return Ok(None);
        };
        let date = dt
            .date
            .context("`previous_secret_expires` needs a date, e.g. 2025-06-30T00:00:00Z")?;
        let time = dt.time.unwrap_or(toml::value::Time {
            hour: 0,
            minute: 0,
            second: 0,
            nanosecond: 0,
        });
        let naive =
            chrono::NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
                .and_then(|d| {
                    d.and_hms_nano_opt(
                        time.hour.into(),
                        time.minute.into(),
                        time.second.into(),
                        time.nanosecond,
                    )
                })
                .context("`previous_secret_expires` is not a valid date and time")?;
        let offset_minutes = match dt.offset {
            Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
            Some(toml::value::Offset::Z) | None => 0,
        };
        Ok(Some(
            naive.and_utc() - chrono::Duration::minutes(offset_minutes),
        ))
    }

    /// The SMTP password, from the environment variable the config names.
    pub fn smtp_password(&self) -> Option<String> {
        std::env::var(&self.smtp.password_env)
            .ok()
            .filter(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[newsletter]
name = "The Brief"
from = "The Brief <brief@news.example.org>"
list_id = "the-brief.news.example.org"
base_url = "https://news.example.org/brief"
postal_address = "1 Example Street"
"#;

    #[test]
    fn defaults_fill_everything_optional() {
        let c = Config::parse(Path::new("brief.toml"), MINIMAL).unwrap();
        assert_eq!(c.delivery.transport, Transport::Outbox);
        assert_eq!(c.delivery.concurrency, 8);
        assert_eq!(c.delivery.retry_min, Duration::from_secs(300));
        assert_eq!(c.smtp.tls, Tls::Starttls);
        assert_eq!(c.state.path, PathBuf::from("state/brief.db"));
        assert_eq!(c.newsletter.audience, vec!["readers".to_string()]);
        assert_eq!(c.sender_domain(), "news.example.org");
    }

    #[test]
    fn a_state_url_must_be_a_postgres_url() {
        let ok = format!("{MINIMAL}\n[state]\nurl = \"postgres://brief@db.example.org:5432/brief?sslmode=verify-full\"\npassword_env = \"BRIEF_DB_PASSWORD\"\n");
        let c = Config::parse(Path::new("brief.toml"), &ok).unwrap();
        assert_eq!(c.state.password_env.as_deref(), Some("BRIEF_DB_PASSWORD"));
        let bad = format!("{MINIMAL}\n[state]\nurl = \"mysql://db/brief\"\n");
        let err = Config::parse(Path::new("brief.toml"), &bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("brief.toml:10:1: error: `[state] url` "),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_located_with_suggestion() {
        let src = format!("{MINIMAL}\n[delivery]\nconcurency = 4\n");
        let err = Config::parse(Path::new("brief.toml"), &src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "brief.toml:10:1: error: unknown key `concurency` (did you mean `concurrency`?)"
        );
    }

    #[test]
    fn bad_duration_is_located() {
        let src = format!("{MINIMAL}\n[delivery]\nretry_min = \"5 parsecs\"\n");
        let err = Config::parse(Path::new("brief.toml"), &src)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("brief.toml:10:13: error:"), "{err}");
    }
}
