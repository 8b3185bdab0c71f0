//! The REST handlers' extractors: axum's own, with their rejections turned into [`ApiError`]
//! (stable codes `bad_path`, `bad_query`, `bad_body`, `body_too_large`) instead of axum's
//! `text/plain` answers.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A path parameter (axum's [`axum::extract::Path`]), refused as `bad_path`.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(t) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(t))
    }
}

/// The query string (axum's [`axum::extract::Query`]), refused as `bad_query`.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(t) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(t))
    }
}

/// The whole body, within the router's limit: over it `body_too_large` (413), unreadable
/// `bad_body` (400).
#[derive(Debug)]
pub(crate) struct Body(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}
