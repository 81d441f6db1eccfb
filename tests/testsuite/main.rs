//! brief's integration tests: one binary (linked once) with a module per area, all on
//! the one harness in `harness.rs`. tests/testsuite/README.md says how to add a test.

mod harness;

mod archive;
mod compose;
mod deliver;
mod dispatch;
mod dkim;
mod headers;
mod hooks;
mod preview;
mod secrets_and_modes;
mod serve;
mod serve_hardening;
mod smtp_wire;
mod tls;
mod unsubscribe_during_send;
