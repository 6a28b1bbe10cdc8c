//! The bundled web UI: every page and asset under `web/` is compiled into the binary, so the
//! appliance works with no internet and no files beside it.

use bytes::Bytes;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// An embedded file and its content type.
pub fn get(path: &str) -> Option<(Bytes, &'static str)> {
    let file = Assets::get(path)?;
    let mime = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Some((Bytes::from(file.data.into_owned()), mime))
}
