//! Acknowledgements of state changes. `Ack` can only be built from a ledger `Receipt`, so a
//! success response for a state change cannot exist before its audit record does (AUD-2).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cf_platform::Receipt;
use serde::Serialize;

/// A success response for a state change, carrying the position of its audit record.
#[derive(Debug)]
pub struct Ack<T> {
    status: StatusCode,
    receipt: Receipt,
    body: T,
}

impl<T: Serialize> Ack<T> {
    /// 200 OK.
    pub fn ok(receipt: Receipt, body: T) -> Self {
        Ack {
            status: StatusCode::OK,
            receipt,
            body,
        }
    }
    /// 201 Created.
    pub fn created(receipt: Receipt, body: T) -> Self {
        Ack {
            status: StatusCode::CREATED,
            receipt,
            body,
        }
    }
}

#[derive(Serialize)]
struct Wrapped<'a, T> {
    audit_seq: u64,
    #[serde(flatten)]
    body: &'a T,
}

impl<T: Serialize> IntoResponse for Ack<T> {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(Wrapped {
                audit_seq: self.receipt.seq(),
                body: &self.body,
            }),
        )
            .into_response();
        // Acknowledgements may carry secrets shown once (new tokens): never cache them.
        r.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&self.receipt.seq().to_string()) {
            r.headers_mut().insert("x-audit-seq", v);
        }
        r
    }
}
