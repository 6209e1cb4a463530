//! Extractors whose rejections use the API's error shape: [`ApiJson`], [`ApiPath`],
//! [`ApiQuery`].
//!
//! axum's own extractors answer a bad request with a plain-text body (and a 422 for JSON
//! that is well-formed but does not fit). Ours answer `{"error": {...}}`: 400
//! `malformed_json` for a body that is not JSON, 400 `invalid_request` naming the field for
//! JSON that does not fit the request type, 413 over the body limit, 415 without a JSON
//! content type.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body, decoded with the offending field named on failure.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Whether the request says its body is JSON (`application/json` or `application/*+json`,
/// parameters such as `charset` allowed).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// Decodes `bytes` as `T`: 400 `malformed_json` if it is not JSON, 400 `invalid_request`
/// (naming the field) if it does not fit `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            if path == "." {
                ApiError::invalid_request(inner.to_string())
            } else {
                ApiError::invalid_request(format!("field `{path}`: {inner}"))
            }
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        }
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than the configured limit",
                )
            } else {
                ApiError::invalid_request(format!("cannot read the body: {}", r.body_text()))
            }
        })?;
        decode(&bytes).map(ApiJson)
    }
}

/// Path parameters, with a 400 in the API's shape when they do not decode.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| ApiError::invalid_request(r.body_text()))
    }
}

/// Query parameters, with a 400 in the API's shape when they do not decode.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::invalid_request(r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        n: Option<u32>,
    }

    #[test]
    fn decode_tells_syntax_from_data_errors() {
        let e = decode::<Req>(b"{\"name\": ").err().map(|e| e.code());
        assert_eq!(e, Some("malformed_json"));
        let e = decode::<Req>(b"{\"name\": \"a\"} x").err().map(|e| e.code());
        assert_eq!(e, Some("malformed_json"));
        let e = decode::<Req>(b"{\"name\": \"a\", \"n\": -1}").err();
        assert_eq!(e.as_ref().map(|e| e.code()), Some("invalid_request"));
        assert!(e.map(|e| e.message().starts_with("field `n`")).unwrap_or(false));
        assert!(decode::<Req>(b"{\"name\": \"a\"}").is_ok());
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
