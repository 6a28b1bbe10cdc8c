//! tigerfans: a ticketing appliance. Tickets are double-entry transfers in TigerBeetle; payment
//! sessions and orders live in an embedded redb file; one static binary serves the API and UI.
//!
//! How a checkout travels: `http::router` → `http::shop::checkout` → `flow::checkout` asks
//! `accounting` for two holds → `batcher` packs them with everyone else's into one TigerBeetle
//! call (`ledger`) → `store` group-commits the session and the PENDING order → the response
//! leaves after the fsync. A payment event: `http::shop::webhook` → `flow::payment` (verify with
//! `payment`, post or void the holds, record the outcome). A door scan: `http::door::scan` →
//! `flow::door` (read the `ticket` code, admit it in the ledger, record the admission). Layers, top to bottom: `main` →
//! `appliance` → `http` → `flow` → `batcher`/`ledger`/`store`/`replica` → `accounting`,
//! `order`, `payment`, `config`, `ids`, `clock`; `scripts/check-layers.py` checks that no
//! import runs in a cycle.

pub mod accounting;
pub mod admin;
pub mod api;
pub mod appliance;
pub mod audit;
pub mod batcher;
pub mod bench;
pub mod clock;
pub mod config;
pub mod flow;
pub mod http;
pub mod http_client;
pub mod ids;
pub mod ledger;
pub mod metrics;
pub mod order;
pub mod payment;
pub mod process;
pub mod replica;
pub mod secrets;
pub mod slots;
pub mod staff;
pub mod store;
pub mod tb_profile;
pub mod throttle;
pub mod ticket;
pub mod web;
