//! decentd: a Decent chat server as one binary, with embedded storage.
//!
//! The binary (`src/main.rs`) only parses the command line and calls into this library; the
//! library is split by concern, see ARCHITECTURE.md for the code map and its invariants.

pub mod api;
pub mod auth;
pub mod backup;
pub mod chat;
pub mod chatbox;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod export;
pub mod ids;
pub mod logging;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod params;
pub mod perms;
pub mod plugins;
pub mod search;
pub mod startup;
pub mod store;
pub mod upgrade;
pub mod web;
pub mod ws;
