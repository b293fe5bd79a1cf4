//! The web client's static files, built into the binary (no CDN, nothing fetched at run
//! time) and served under `/web/`: today the SFrame layer (`sframe.js`, WebCrypto only)
//! and its encoded-frame transform worker (`sframe-worker.js`).
//!
//! Owns: which files exist and how they are served (type, no sniffing, no caching of a
//! stale client). Must not touch: calls, keys, the WebSocket protocol.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (path, content type, body) of every file under `/web/`.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "/web/sframe.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sframe.js"),
    ),
    (
        "/web/sframe-worker.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sframe-worker.js"),
    ),
];

/// Serves `path` if it is one of [`FILES`], 404 otherwise.
pub fn serve(path: &str) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
