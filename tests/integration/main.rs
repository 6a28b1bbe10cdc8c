//! The integration tests: one binary, so one TigerBeetle replica (formatting its 1.1 GiB data
//! file and starting it takes seconds) serves every test here. Tests isolate by ledger: each
//! server gets a ledger of its own. One file per area; the tests that need replicas of their own
//! (a three-replica cluster, the appliance's co-located replica) are binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod audit;
mod batcher;
mod bench;
mod browser;
mod browser_door;
mod door;
mod door_rules;
mod durability;
mod expiry;
mod flow;
mod hostile;
mod kiosk;
mod overload;
mod oversell;
mod reference;
mod security;
mod storms;
