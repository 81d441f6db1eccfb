//! brief: an email newsletter pipeline.
//!
//! Edition ──compose──▶ MJML + text ──compile (mrml, once)──▶ Compiled
//!   ──personalize (per recipient)──▶ message ──deliver (journal + transport)──▶ receipt
//!
//! One module per stage; the binary (`src/main.rs`) only parses the command line and
//! maps outcomes to exit codes.

pub mod archive;
pub mod audience;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod compile;
pub mod compose;
pub mod config;
pub mod deliver;
pub mod diag;
pub mod dispatch;
pub mod edition;
pub mod exit;
pub mod fsutil;
pub mod hooks;
pub mod mailto;
pub mod personalize;
pub mod preview;
pub mod report;
pub mod serve;
pub mod store;
pub mod token;
