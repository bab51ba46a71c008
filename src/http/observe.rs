//! What an operator sees of the HTTP surface: a request id on every request and response,
//! Prometheus metrics (`GET /metrics`), and structured log lines that carry the id.
//!
//! Nothing here decides anything or reads the body; it wraps every route the same way.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument as _;

use super::AppState;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a client; a longer or odder one is replaced.
pub const REQUEST_ID_CHARS_MAX: usize = 64;

/// Seconds between folding recorded samples into the histograms (bounds their memory).
const UPKEEP_SECONDS: u64 = 5;

/// Latency buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Records-per-append buckets.
const BATCH_BUCKETS_RECORDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's metrics recorder (once; later calls reuse it) and starts its
/// upkeep. `None` when another recorder was installed first (an embedding program's):
/// then `/metrics` says so instead of rendering.
pub fn install_metrics() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Suffix("_records".into()),
                        BATCH_BUCKETS_RECORDS,
                    )
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("writ-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(UPKEEP_SECONDS));
                        upkeep.run_upkeep();
                    }
                });
            Some(handle)
        })
        .clone()
}

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let Some(handle) = install_metrics() else {
        return HttpResponse::NotFound()
            .json(serde_json::json!({"error": "not_found", "detail": "metrics are exported by the program embedding writ"}));
    };
    metrics::gauge!("writ_ledger_seq").set(state.ledger.head().seq as f64);
    metrics::gauge!("writ_ledger_lag_records").set(state.ledger.lag() as f64);
    metrics::gauge!("writ_ledger_commands_queued").set(state.ledger.commands_queued() as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// The request id of the request being served (for handlers that log).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Wraps every request: takes or makes its id, runs it inside a span carrying the id,
/// counts it by route and status, times it, and echoes the id on the response.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .filter(|value| acceptable(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    // The matched pattern, not the path: ids in paths must not become label values.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(id.as_bytes()),
        method = %method,
        route = %route
    );
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status();
    let latency = started.elapsed();
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    metrics::counter!(
        "writ_http_requests_total",
        "route" => route.clone(),
        "method" => method.to_string(),
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("writ_http_request_duration_seconds", "route" => route)
        .record(latency.as_secs_f64());
    span.in_scope(|| {
        let latency_us = latency.as_micros() as u64;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_us, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), latency_us, "request served");
        }
    });
    Ok(response)
}

/// A client's own request id is kept when it is short visible ASCII without spaces.
fn acceptable(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= REQUEST_ID_CHARS_MAX && id.iter().all(|b| b.is_ascii_graphic())
}

/// A process-unique id: a random prefix chosen at start and a counter.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(rand::random);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix:08x}-{n:x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}
