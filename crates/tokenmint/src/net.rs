//! Outbound HTTP helpers shared by every client: reading a response body under a size cap.

use bytes::{Bytes, BytesMut};

/// Why a capped read stopped.
#[derive(Debug)]
pub(crate) enum CappedReadError {
    /// The body (declared or actual) is over the cap.
    TooLarge,
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads `response`'s body, refusing it as soon as it exceeds `cap` bytes
/// (by `Content-Length` up front, or while streaming), so a hostile or
/// broken peer cannot make us buffer without bound.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, CappedReadError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(CappedReadError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(CappedReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
