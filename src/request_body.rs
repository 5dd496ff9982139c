//! Reading a whole, small request body: the issuer's forms and the admin API's JSON. Proxied
//! bodies are never read this way; they stream to the upstream.

use pingora::protocols::http::ServerSession;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the caller's cap; the connection is set to close rather than drain the rest.
    TooLarge,
    Unreadable,
}

/// Reads the body, refusing it as soon as its declared or received size passes `cap`.
pub async fn read_capped(session: &mut ServerSession, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        session.set_keepalive(None);
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    session.set_keepalive(None);
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(BodyError::Unreadable),
        }
    }
}
