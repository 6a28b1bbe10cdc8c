//! tigerfans: a ticketing appliance. Tickets are double-entry transfers in TigerBeetle; payment
//! sessions and orders live in an embedded redb file; one static binary serves the API and UI.
//!
//! How a checkout travels: `http::routes` → `flow::App::checkout` → `accounting` builds two holds
//! → `batcher` packs them with everyone else's into one TigerBeetle call (`ledger`) → `store`
//! group-commits the session and the PENDING order → the response leaves after the fsync.

pub mod accounting;
pub mod admin;
pub mod api;
pub mod appliance;
pub mod audit;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod flow;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod payment;
pub mod replica;
pub mod store;
pub mod web;
