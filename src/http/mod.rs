//! The HTTP edge: a hyper HTTP/1.1 server with explicit limits (`server`, `limits`), one list of
//! routes (`router`), request and response helpers, and the handlers by audience: the shop
//! (customers, MockPay, the provider's webhook), the admin, and the operator (`ops`).

pub mod admin;
pub mod hosts;
pub mod limits;
pub mod ops;
pub mod request;
pub mod response;
pub mod route;
pub mod router;
pub mod server;
pub mod shop;

pub use limits::HttpLimits;
pub use server::{listen, serve, LISTEN_BACKLOG};
