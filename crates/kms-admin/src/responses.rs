//! The answers of the native API: JSON (every one ending with a newline), binary, metrics
//! text, and errors as `docs/http-api.md` documents them.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::ApiError;

/// A response of the admin server.
pub(crate) type Resp = Response<Full<Bytes>>;

/// The starting size of a JSON answer's buffer: room for a data-key or decrypt answer.
const RESPONSE_CAPACITY: usize = 512;

/// A JSON answer; like every JSON answer, it ends with a newline (friendly to `curl` and shells).
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    // Sized for the hot answers (a data key: two base64 fields and a key id) so the buffer is
    // not grown while it is written: each growth copied the bytes written so far (a plaintext
    // key among them) and left the old copy in freed memory.
    let mut body = Vec::with_capacity(RESPONSE_CAPACITY);
    serde_json::to_writer(&mut body, value).expect("response types serialize");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A binary answer (a backup bundle).
pub(crate) fn bytes_response(bytes: Vec<u8>) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}

pub(crate) fn text_response(text: String) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}

pub(crate) fn error_response(err: &ApiError) -> Resp {
    let mut body = err.body();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = err.status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if err.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if err.status == StatusCode::METHOD_NOT_ALLOWED {
        // The exact set varies by route; every route accepts one of these.
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST, PUT, DELETE"));
    }
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn json_answers_end_with_a_newline() {
        let ok = json(StatusCode::OK, &serde_json::json!({"a": 1}));
        let bytes = futures_body(ok);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let err = error_response(&ApiError::invalid("limit", "too big"));
        let bytes = futures_body(err);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["error"]["field"], "limit");
    }

    fn futures_body(response: Resp) -> Bytes {
        let body = response.into_body();
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(body.collect()).unwrap().to_bytes()
    }
}
