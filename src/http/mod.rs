//! The HTTP edge: a hyper HTTP/1.1 server with explicit limits (`server`, `limits`), one list of
//! routes (`route`, dispatched by `router`), request and response helpers, and the handlers by
//! audience: the shop (customers, MockPay, the provider's webhook), staff sessions (`session`),
//! the door, the box office, the admin (with `staff` accounts, the CSV `export`s and the
//! `kiosk`'s own load runs), and the operator (`ops`).

pub mod admin;
pub mod box_office;
pub mod door;
pub mod export;
pub mod hosts;
pub mod kiosk;
pub mod limits;
pub mod ops;
pub mod request;
pub mod response;
pub mod route;
pub mod router;
pub mod server;
pub mod session;
pub mod shed;
pub mod shop;
pub mod staff;

pub use limits::HttpLimits;
pub use server::{listen, serve, LISTEN_BACKLOG};
