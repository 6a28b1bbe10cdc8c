//! The HTTP edge's own parsing of what a client sends, before any handler: the route of a path
//! (`http::route`) and the host a request names (`http::hosts`).
//!
//! Input layout: `[method, host_len, host.., path..]`.
//!
//! Properties:
//! - neither panics on any bytes;
//! - a route's `Allow` header lists exactly the methods it permits (and a route that does not
//!   exist permits any method: it is a 404 whatever the method);
//! - a path parses to the same route with a trailing query or fragment cut off by the caller;
//! - `host_name` is lowercase and idempotent (for host names and addresses), and
//!   `allowed` agrees with it: a configured name is allowed with a port too, an IP address always.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tigerfans_fuzz::hosts;
use tigerfans_fuzz::route::{Allow, Route};

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

fuzz_target!(|data: &[u8]| {
    let &[method, host_len, ref rest @ ..] = data else {
        return;
    };
    let host_len = (host_len as usize).min(rest.len());
    let (host, path) = rest.split_at(host_len);
    let (host, path) = (String::from_utf8_lossy(host), String::from_utf8_lossy(path));

    let route = Route::parse(&path);
    let allow = route.allow();
    let method = hyper::Method::from_bytes(METHODS[method as usize % METHODS.len()].as_bytes()).unwrap();
    let listed = allow.header().split(", ").any(|m| m == method.as_str());
    if allow != Allow::Any {
        assert_eq!(allow.permits(&method), listed, "{route:?} {method}");
    } else {
        assert!(allow.permits(&method));
    }

    let name = hosts::host_name(&host);
    // A host name (letters, digits, dots, dashes) or an address is cut no further.
    let hostname = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if hostname || name.parse::<std::net::IpAddr>().is_ok() {
        assert_eq!(hosts::host_name(&name), name, "idempotent for {host:?}");
    }
    assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    if name.parse::<std::net::IpAddr>().is_ok() {
        assert!(hosts::allowed(&host, &[]));
    }
    let configured = vec![name.clone()];
    if hostname {
        assert!(hosts::allowed(&format!("{name}:8000"), &configured), "{name:?}");
    }
});
