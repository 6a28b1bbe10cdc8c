//! Which `Host` a request may name. A page on any site can reach an appliance on the venue's
//! LAN by DNS rebinding: its own name, re-pointed at the appliance's address, makes the browser
//! send the appliance that site's requests, with that site's name in `Host`. So a request must
//! name the appliance: an IP address (a rebinding needs a name: a page served from an address
//! is that address's own origin), `localhost`, this machine's host name (and its `.local`
//! mDNS name), or a name the venue configured (`allowed_hosts`). Anything else is a 421.

use std::net::IpAddr;
use std::sync::OnceLock;

/// The host part of a `Host` header: without the port, without IPv6 brackets, lowercase.
pub fn host_name(header: &str) -> String {
    let header = header.trim();
    let host = if let Some(rest) = header.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if header.matches(':').count() > 1 {
        header // an IPv6 address without brackets: no port to cut
    } else {
        header.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(header, |(h, _)| h)
    };
    host.trim_start().trim_end_matches(|c: char| c == '.' || c.is_whitespace()).to_ascii_lowercase()
}

/// This machine's host name, read once.
fn machine_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut buffer = [0u8; 256];
        // SAFETY: gethostname writes at most the buffer's length.
        let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        if ok {
            String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase()
        } else {
            String::new()
        }
    })
}

/// Whether a request that names `header` (its `Host`) is for this appliance.
pub fn allowed(header: &str, configured: &[String]) -> bool {
    let host = host_name(header);
    if host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let machine = machine_name();
    if !machine.is_empty() && (host == machine || host.strip_suffix(".local") == Some(machine)) {
        return true;
    }
    configured.iter().any(|name| name.eq_ignore_ascii_case(&host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_ports() {
        assert_eq!(host_name("Tickets.Venue.LAN:8000"), "tickets.venue.lan");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("192.168.1.20"), "192.168.1.20");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("x :80"), "x");
        let venue = vec!["tickets.venue.lan".to_string()];
        for ok in ["127.0.0.1:8000", "10.0.0.5", "[fe80::1]:80", "localhost:8000", "app.localhost", "TICKETS.venue.lan"]
        {
            assert!(allowed(ok, &venue), "{ok}");
        }
        for refused in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "tickets.venue.lan.evil", ""] {
            assert!(!allowed(refused, &venue), "{refused}");
        }
        let machine = machine_name();
        if !machine.is_empty() {
            assert!(allowed(machine, &[]) && allowed(&format!("{machine}.local:80"), &[]));
        }
    }
}
