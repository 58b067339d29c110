//! The admin API's query-string parameters: `Params<T>` reads them as
//! `Query<T>` does, and refuses what `T` does not know (every parameter
//! struct is `deny_unknown_fields`) with a JSON error that names the
//! parameter — a misspelt `?dry_rn=true` must not run a real GC.

use axum::extract::{FromRequestParts, Query};
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;

use super::AdminError;

pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Params(t)),
            Err(e) => Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; this operation's parameters are in /api/v1/openapi.json",
                    e.body_text()
                        .replace("Failed to deserialize query string: ", "query string: ")
                ),
            )),
        }
    }
}
