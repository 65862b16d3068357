//! Loft: a self-hosted webhook relay and delivery service, controlled through gRPC.
//!
//! Modules by concern: `api` (gRPC transport), `http` (HTTP listener), `auth`, `domain`
//! (resource types that parse), `routing` (patterns, CEL, templates), `signing`, `store`
//! (SQLite and PostgreSQL), `crypto`; `serve` is the composition root; `cli` holds the client
//! commands (`listen`, `tail`, `send`).

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod feed;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod intake;
pub mod proto;
pub mod retention;
pub mod routing;
pub mod serve;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod timeutil;
