//! The integration suite: every test that starts the real `decentd` binary (or reads the
//! sources it is built from), linked into one test binary. One binary instead of one per file
//! compiles the shared helper once and links once, and lets the test harness run tests from
//! every file side by side.
//!
//! Each module is one area of the server; a test's full name starts with its module
//! (`cargo test --test suite -- roles::` runs one area). `common` is the one spawn-a-server
//! helper, shared with the benchmarks.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod backup;
mod channels;
mod chatbox;
mod clients;
mod cluster;
mod direct;
mod emotes_uploads;
mod gateway;
mod hardening;
mod layers;
mod lifecycle;
mod messages;
mod operations;
mod plugin_examples;
mod plugin_sandbox;
mod protocol;
mod proxy;
mod roles;
mod schemas;
mod search;
mod signalr;
mod tls;
mod users_sessions;
mod web;
