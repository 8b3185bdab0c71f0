//! The block explorer at `/explorer/`: a page the node serves itself, its assets built into
//! the binary (nothing fetched from elsewhere, so it works on a LAN without internet).
//!
//! The page is plain ES modules (`crates/rpc/explorer/`): it reads the node's own REST and
//! JSON-RPC APIs, follows `/v1/feed` for live updates, and checks proofs in the browser
//! (`verify.js`, WebCrypto). The node only serves the files, each with a strong `ETag` so a
//! reload costs a `304`, and a Content-Security-Policy that lets the page talk to its own
//! origin only.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => $type:literal),+ $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../explorer/", $name)),
        }),+]
    };
}

/// Every file of the page.
const ASSETS: &[Asset] = assets!(
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "pages.js" => "text/javascript; charset=utf-8",
    "device.js" => "text/javascript; charset=utf-8",
    "chart.js" => "text/javascript; charset=utf-8",
    "verify.js" => "text/javascript; charset=utf-8",
    "cbor.js" => "text/javascript; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
);

/// The `ETag` of each asset (SHA-256 of its bytes), in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.bytes);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
                .expect("hex is a valid header value")
        })
        .collect()
});

/// The page may load its own files and talk to its own node, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The explorer's routes: `/explorer` (redirected), `/explorer/` and its files.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/explorer", get(|| async { Redirect::permanent("/explorer/") }))
        .route(
            "/explorer/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/explorer/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

/// Answers one asset, or `304` when the client holds it already, or a JSON `404`.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return crate::ApiError::not_found(format!("the explorer has no file {name:?}"))
            .into_response();
    };
    let asset = &ASSETS[i];
    let etag = ETAGS[i].clone();
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_etag() {
        for a in ASSETS {
            let r = serve(a.name, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            let etag = r.headers()[header::ETAG].clone();
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, etag);
            assert_eq!(serve(a.name, &h).status(), StatusCode::NOT_MODIFIED);
        }
    }

    #[test]
    fn unknown_and_traversing_names_are_not_found() {
        for name in ["nope.js", "../Cargo.toml", "", "index.html/"] {
            assert_eq!(
                serve(name, &HeaderMap::new()).status(),
                StatusCode::NOT_FOUND
            );
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for needle in ["http://", "https://", "//cdn", "fonts.g"] {
            assert!(!html.contains(needle), "index.html refers to {needle}");
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.bytes).unwrap();
            for line in text
                .lines()
                .filter(|l| l.trim_start().starts_with("import"))
            {
                assert!(
                    line.contains("'./") || line.contains("\"./"),
                    "{}: {line}",
                    a.name
                );
            }
        }
    }
}
