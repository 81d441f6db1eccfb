//! brief: an email newsletter pipeline.
//!
//! Edition ──compose──▶ MJML + text ──compile (mrml, once)──▶ Compiled
//!   ──personalize (per recipient)──▶ message ──deliver (journal + transport)──▶ receipt
//!
//! One module per stage. The library knows no command line: the binary (`src/main.rs`,
//! with its `cli` and `cmd` modules) parses arguments, calls these modules, prints, and
//! maps outcomes to exit codes.

pub mod archive;
pub mod audience;
pub mod bounce;
pub mod check;
pub mod clock;
pub mod compile;
pub mod compose;
pub mod config;
pub mod correct;
pub mod deliver;
pub mod diag;
pub mod dispatch;
pub mod doctor;
pub mod edition;
pub mod exit;
pub mod fsutil;
pub mod hooks;
pub mod mailto;
pub mod personalize;
pub mod preview;
pub mod report;
pub mod sample;
pub mod send;
pub mod serve;
pub mod store;
pub mod token;
pub mod tracking;
