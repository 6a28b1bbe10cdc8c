//! The server's pure modules, compiled from their own source files (see the comment at the top of
//! ../Cargo.toml for why they are included by path instead of depending on `tigerfans`).

#[path = "../../src/api.rs"]
pub mod api;
#[path = "../../src/config.rs"]
pub mod config;
#[path = "../../src/payment.rs"]
pub mod payment;
#[path = "../../src/http/hosts.rs"]
pub mod hosts;
#[path = "../../src/http/route.rs"]
pub mod route;
