//! Matching events to subscriptions: event type patterns, CEL filters, body templates.

pub mod filter;
pub mod pattern;
pub mod router;
pub mod template;
