//! The request body's read deadline: a body must have arrived whole within
//! `--request-body-timeout-ms` of its request's head, or the request is answered 408 and
//! its connection closed. actix bounds the head (`client_request_timeout`) and idle
//! connections (keep-alive) but not the body: without this, a client that promises a
//! `Content-Length` and then sends nothing, or one byte every half second, holds a
//! connection and its descriptor for as long as it likes.
//!
//! The deadline wraps the body's stream, so handlers keep their own size limits and
//! error shapes: when it passes, the stream yields an error and the answer, whatever the
//! handler made of the error, becomes the 408. A body its handler never read is kept open
//! until the answer is written, so that actix closes the connection after it instead of
//! draining the rest of a chunked body, which no timer bounds.
//!
//! It decides nothing about the request and reads no byte of it itself.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse, web};
use futures_core::Stream;

/// Default of `--request-body-timeout-ms`: a body of the largest size writ takes (64 KiB)
/// arrives in well under a second on any link a client should use.
pub const REQUEST_BODY_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// How far a request's body got when its handler answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Not read to its end (perhaps not read at all).
    Unfinished,
    /// Read to its end.
    Ended,
    /// The deadline passed before its end arrived.
    TimedOut,
}

/// Wraps every request that has a body: its stream under `deadline`, counted from now
/// (the head has been read).
pub async fn read_deadline(
    deadline: Duration,
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let payload = request.take_payload();
    if matches!(payload, Payload::None) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let body = Rc::new(RefCell::new(payload));
    let progress = Rc::new(Cell::new(Progress::Unfinished));
    let stream: Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>> =
        Box::pin(Deadlined {
            body: Rc::clone(&body),
            progress: Rc::clone(&progress),
            deadline: Box::pin(tokio::time::sleep(deadline)),
        });
    request.set_payload(Payload::from(stream));
    let oauth = request.path().starts_with("/oauth/");
    let answered = next.call(request).await;
    let answer = match (progress.get(), answered) {
        (Progress::Ended, answered) => return Ok(answered?.map_into_left_body()),
        (Progress::TimedOut, Ok(response)) => {
            Ok(response.into_response(timed_out(deadline, oauth)))
        }
        // The handler's error (its reading of the timed-out body) becomes the 408 itself.
        (Progress::TimedOut, Err(_)) => Err(timed_out(deadline, oauth)),
        (Progress::Unfinished, Ok(response)) => Ok(response.map_into_boxed_body()),
        (Progress::Unfinished, Err(err)) => Err(err.error_response()),
    };
    // The unread rest of the body is held by the answer's body until that is written:
    // actix then closes the connection (within --client-disconnect-timeout-ms) instead
    // of draining a chunked body, which no timer bounds.
    let unread = Unread { _body: body };
    match answer {
        Ok(response) => Ok(response
            .map_body(|_, answer| {
                BoxBody::new(Holding {
                    answer,
                    _unread: unread,
                })
            })
            .map_into_right_body()),
        Err(response) => Err(actix_web::error::InternalError::from_response(
            "the request failed before its body was read",
            response.map_body(|_, answer| {
                BoxBody::new(Holding {
                    answer,
                    _unread: unread,
                })
            }),
        )
        .into()),
    }
}

/// The rest of a body its handler left unread (or that came too late).
struct Unread {
    _body: Rc<RefCell<Payload>>,
}

/// An answer's body, holding the request's unread body until it has been written.
struct Holding {
    answer: BoxBody,
    _unread: Unread,
}

impl MessageBody for Holding {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().answer).poll_next(cx)
    }
}

/// The 408: in RFC 6749's shape on the OAuth endpoints, writ's own elsewhere. The
/// connection closes after it (the rest of the body may still be on its way).
fn timed_out(deadline: Duration, oauth: bool) -> HttpResponse {
    let ms = deadline.as_millis();
    let detail = format!(
        "the request body did not arrive whole within {ms} ms of its headers; send the body at once, right after them"
    );
    let body = if oauth {
        serde_json::json!({"error": "invalid_request", "error_description": detail})
    } else {
        serde_json::json!({"error": "request_timeout", "detail": detail})
    };
    let mut response = HttpResponse::build(StatusCode::REQUEST_TIMEOUT)
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body);
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

/// The body's stream, ended with an error once the deadline passes.
struct Deadlined {
    body: Rc<RefCell<Payload>>,
    progress: Rc<Cell<Progress>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Deadlined {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.progress.get() == Progress::TimedOut {
            return Poll::Ready(Some(Err(timeout_error())));
        }
        // What has arrived is handed on even at the deadline; the deadline is for waiting.
        let polled = Pin::new(&mut *this.body.borrow_mut()).poll_next(cx);
        match polled {
            Poll::Ready(None) => {
                this.progress.set(Progress::Ended);
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.progress.set(Progress::TimedOut);
                    Poll::Ready(Some(Err(timeout_error())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn timeout_error() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    ))
}
