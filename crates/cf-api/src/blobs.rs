//! Streamed blob encryption through the API (ENC-2): a file, image or video of any size goes in
//! as the request body and comes back encrypted (or decrypted) as the response body, in the same
//! STREAM format `chengfang kms encrypt-file` writes, with memory flat whatever the size.
//!
//! The cipher works on blocking threads; channels carry the bodies between them and the async
//! side. A failure before the first byte of output is an ordinary error response; one after it
//! (a chunk that does not authenticate half-way through) aborts the response, so a client never
//! sees a clean end of a stream that did not authenticate whole.

use std::io::{Read, Write};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use cf_kms::Algorithm;
use cf_platform::authz::Action;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Chunks in flight each way: enough to keep the cipher busy, small enough to hold memory flat.
const DEPTH: usize = 8;

/// The request body as a blocking reader.
struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// The response body as a blocking writer; the first write tells the handler output began.
struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    started: Option<oneshot::Sender<Result<(), ApiError>>>,
}

impl BodyWriter {
    fn begin(&mut self) {
        if let Some(s) = self.started.take() {
            let _ = s.send(Ok(()));
        }
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.begin();
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

/// Feed the request body to `work` on a blocking thread and stream what it writes back. The
/// answer comes once output begins (or `work` fails before any).
async fn pipe<F>(body: Body, work: F) -> Result<Response, ApiError>
where
    F: FnOnce(&mut BodyReader, &mut BodyWriter) -> Result<(), ApiError> + Send + 'static,
{
    let (in_tx, in_rx) = mpsc::channel::<Result<Bytes, String>>(DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(DEPTH);
    let (started_tx, started_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut s = body.into_data_stream();
        while let Some(frame) = s.next().await {
            let stop = frame.is_err();
            if in_tx.send(frame.map_err(|e| e.to_string())).await.is_err() || stop {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let mut r = BodyReader {
            rx: in_rx,
            cur: Bytes::new(),
        };
        let mut w = BodyWriter {
            tx: out_tx,
            buf: Vec::new(),
            started: Some(started_tx),
        };
        let done = work(&mut r, &mut w).and_then(|()| {
            w.flush()
                .map_err(|e| ApiError::invalid("body", e.to_string()))
        });
        match done {
            Ok(()) => w.begin(),
            Err(e) => match w.started.take() {
                Some(s) => {
                    let _ = s.send(Err(e));
                }
                // Output began: abort the response instead of ending it cleanly.
                None => {
                    let _ = w.tx.blocking_send(Err(std::io::Error::other(e.message)));
                }
            },
        }
    });
    match started_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ApiError::new(
                cf_core::ErrorCode::Internal,
                "the stream worker stopped",
            ));
        }
    }
    let stream =
        futures::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
        );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `algorithm` of a stream (default AES-256-GCM).
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// `aes256-gcm`, `sm4-gcm` or `chacha20-poly1305`.
    #[serde(default)]
    pub algorithm: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/encrypt-stream", tag = "kms", params(("name" = String, Path), ("algorithm" = Option<String>, Query, description = "aes256-gcm (default), sm4-gcm, chacha20-poly1305")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "The blob encrypted (STREAM chunks, the wrapped data key in the header)", content_type = "application/octet-stream")))]
pub async fn encrypt_stream(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let q = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let alg = match q.0.algorithm.as_deref() {
        None => Algorithm::Aes256Gcm,
        Some(a) => Algorithm::parse(a).ok_or_else(|| {
            ApiError::invalid("algorithm", "use aes256-gcm, sm4-gcm or chacha20-poly1305")
        })?,
    };
    let (dk, wrapped) = s.kms.stream_key(&auth, &caller.ctx, &name, alg).await?;
    pipe(body, move |r, w| {
        cf_kms::stream::encrypt(
            alg,
            &dk,
            &wrapped,
            cf_kms::stream::DEFAULT_CHUNK_LOG2,
            r,
            w,
            &cf_crypto::OsRng,
        )
        .map(|_| ())
        .map_err(|e| ApiError::invalid("body", e.to_string()))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/decrypt-stream", tag = "kms", params(("name" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "The blob; aborted if a later chunk does not authenticate", content_type = "application/octet-stream"), (status = 400, description = "Malformed or tampered before any output")))]
pub async fn decrypt_stream(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let rt = tokio::runtime::Handle::current();
    pipe(body, move |r, w| {
        let h = cf_kms::stream::StreamHeader::read(r)
            .map_err(|e| ApiError::invalid("body", e.to_string()))?;
        // The data key is unwrapped (and audited) on the runtime; this is a blocking thread.
        let dk = rt.block_on(
            s.kms
                .stream_unwrap(&auth, &caller.ctx, &name, &h.wrapped_key),
        )?;
        cf_kms::stream::decrypt(&h, &dk, r, w)
            .map(|_| ())
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    })
    .await
}
