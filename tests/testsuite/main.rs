//! brief's integration tests: one binary (linked once) with a module per area, all on
//! the one harness in `harness.rs`. tests/testsuite/README.md says how to add a test.

// The harness's helpers are shared between the modules: `pub` is their interface.
#![allow(unreachable_pub)]

mod harness;

mod archive;
mod bounce_corpus;
mod bounce_engine;
mod bounce_mailto;
mod bounces_postfix;
mod broken_pipe;
mod compose;
mod corrections;
mod deliver;
mod dispatch;
mod dkim;
mod doctor;
mod doctor_check;
mod guarantees;
mod headers;
mod hooks;
mod inbox;
mod journal_faults;
mod mrml_traps;
mod pg;
mod pg_claims;
mod pg_hot;
mod pg_lost_claim;
mod pg_more;
mod preview;
mod secrets_and_modes;
mod serve;
mod serve_hardening;
mod signup;
mod smtp_wire;
mod sponsor;
mod tls;
mod unsubscribe_during_send;
