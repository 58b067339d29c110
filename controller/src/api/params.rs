//! Query-string parameters: `Params<T>` reads them as `Query<T>` does and
//! refuses a parameter `T` does not know (each struct is
//! `deny_unknown_fields`) as a 400 that names it, in the API's JSON error.

use axum::extract::{FromRequestParts, Query};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Params(t))
            .map_err(|e| {
                ApiError::BadRequest(
                    e.body_text()
                        .replace("Failed to deserialize query string: ", "query string: "),
                )
            })
    }
}
