//! Counting and telling: each connection keeps a `Tally` (an HDR histogram of latencies and
//! counts of every answer and failure), the tallies of a scenario merge into a `Summary`,
//! and a summary prints as a line for people, a `RESULT` line, or a JSON object. Failures
//! are counted by kind and quoted, never dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::args::Scenario;

/// Lowest latency recorded, in microseconds (shorter ones count as this).
pub const LATENCY_US_MIN: u64 = 1;
/// Highest latency recorded exactly, in microseconds (longer ones count as this).
pub const LATENCY_US_MAX: u64 = 60 * 1_000_000;
/// Significant decimal digits the histogram keeps.
pub const LATENCY_DIGITS: u8 = 3;
/// Most distinct failures quoted per scenario (the first of each kind or status).
pub const SAMPLES_MAX: usize = 16;

/// What one connection (or, merged, one scenario) saw.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of every measured answer, in microseconds.
    latency_us: Histogram<u64>,
    /// Measured answers, whatever their status.
    pub requests: u64,
    /// Measured answers that were not 2xx, by status.
    pub non2xx: BTreeMap<u16, u64>,
    /// Measured requests that failed without a usable answer, by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Tokens fetched again during the run (expiry near, or quota used up).
    pub refreshes: u64,
    /// Connections opened to replace one that failed.
    pub reconnects: u64,
    /// Answers during the warm-up (discarded from the figures).
    pub warmup_requests: u64,
    /// Non-2xx answers and failures during the warm-up.
    pub warmup_failures: u64,
    /// The first message of each kind of failure.
    samples: BTreeMap<String, String>,
    /// When the last measured answer came.
    last_answer_at: Option<Instant>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Result<Tally, String> {
        let latency_us = Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, LATENCY_DIGITS)
            .map_err(|err| format!("making a latency histogram: {err}"))?;
        Ok(Tally {
            latency_us,
            requests: 0,
            non2xx: BTreeMap::new(),
            errors: BTreeMap::new(),
            refreshes: 0,
            reconnects: 0,
            warmup_requests: 0,
            warmup_failures: 0,
            samples: BTreeMap::new(),
            last_answer_at: None,
        })
    }

    fn sample(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.samples.len() < SAMPLES_MAX && !self.samples.contains_key(&key) {
            self.samples.insert(key, message());
        }
    }

    /// An answer that took `latency`, with its status and (for a non-2xx) its body.
    pub fn answered(&mut self, measured: bool, latency: Duration, status: u16, body: &[u8]) {
        let success = (200..300).contains(&status);
        if !success {
            let phase = if measured { "" } else { "warm-up " };
            self.sample(format!("{phase}HTTP {status}"), || {
                format!("{phase}HTTP {status}: {}", crate::target::quote(body))
            });
        }
        if !measured {
            self.warmup_requests += 1;
            self.warmup_failures += u64::from(!success);
            return;
        }
        self.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.max(LATENCY_US_MIN));
        if !success {
            *self.non2xx.entry(status).or_default() += 1;
        }
        self.last_answer_at = Some(Instant::now());
    }

    /// A request that failed without a usable answer.
    pub fn failed(&mut self, measured: bool, kind: &'static str, detail: &str) {
        let phase = if measured { "" } else { "warm-up " };
        self.sample(format!("{phase}{kind}"), || {
            format!("{phase}{kind}: {detail}")
        });
        if measured {
            *self.errors.entry(kind).or_default() += 1;
        } else {
            self.warmup_failures += 1;
        }
    }

    /// Adds `other` to this tally.
    pub fn merge(&mut self, other: Tally) -> Result<(), String> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|err| format!("merging latency histograms: {err}"))?;
        self.requests += other.requests;
        for (status, count) in other.non2xx {
            *self.non2xx.entry(status).or_default() += count;
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.refreshes += other.refreshes;
        self.reconnects += other.reconnects;
        self.warmup_requests += other.warmup_requests;
        self.warmup_failures += other.warmup_failures;
        for (key, message) in other.samples {
            self.sample(key, || message);
        }
        self.last_answer_at = self.last_answer_at.max(other.last_answer_at);
        Ok(())
    }
}

/// One scenario's figures.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Which.
    pub scenario: Scenario,
    /// Connections used.
    pub connections: usize,
    /// The measured window: from the end of the warm-up to the last measured answer (at
    /// least the asked duration).
    pub seconds: f64,
    /// What was counted.
    pub tally: Tally,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Summary {
    /// The figures of `tally`, measured from `measure_from` for at least `duration`.
    pub fn new(
        scenario: Scenario,
        connections: usize,
        measure_from: Instant,
        duration: Duration,
        tally: Tally,
    ) -> Summary {
        let end = tally
            .last_answer_at
            .map_or(duration, |at| at.saturating_duration_since(measure_from))
            .max(duration);
        Summary {
            scenario,
            connections,
            seconds: end.as_secs_f64(),
            tally,
        }
    }

    /// Measured answers that were not 2xx.
    pub fn non2xx(&self) -> u64 {
        self.tally.non2xx.values().sum()
    }

    /// Measured requests without a usable answer.
    pub fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Whether any request, measured or in the warm-up, failed.
    pub fn failed(&self) -> bool {
        self.non2xx() + self.errors() + self.tally.warmup_failures > 0
    }

    /// Measured answers per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.tally.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A latency quantile in milliseconds (0 without answers).
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.tally.requests == 0 {
            return 0.0;
        }
        ms(self.tally.latency_us.value_at_quantile(quantile))
    }

    /// The slowest answer in milliseconds.
    pub fn max_ms(&self) -> f64 {
        if self.tally.requests == 0 {
            return 0.0;
        }
        ms(self.tally.latency_us.max())
    }

    /// The line for scripts: `RESULT key=value ...`, keys fixed, in this order.
    pub fn result_line(&self) -> String {
        format!(
            "RESULT scenario={} connections={} seconds={:.1} requests={} rps={:.1} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} non2xx={} errors={} refreshes={}",
            self.scenario.name(),
            self.connections,
            self.seconds,
            self.tally.requests,
            self.rps(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.max_ms(),
            self.non2xx(),
            self.errors(),
            self.tally.refreshes,
        )
    }

    /// The line for people.
    pub fn human_line(&self) -> String {
        let mut line = format!(
            "{}: {} requests in {:.1} s on {} connections, {:.1}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} non-2xx, {} errors",
            self.scenario.name(),
            self.tally.requests,
            self.seconds,
            self.connections,
            self.rps(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.max_ms(),
            self.non2xx(),
            self.errors(),
        );
        let t = &self.tally;
        for (count, what) in [
            (t.refreshes, "token refreshes"),
            (t.reconnects, "reconnections"),
            (t.warmup_failures, "failures during the warm-up"),
        ] {
            if count > 0 {
                line.push_str(&format!("; {count} {what}"));
            }
        }
        line
    }

    /// The first message of each kind of failure, for stderr.
    pub fn samples(&self) -> impl Iterator<Item = &String> {
        self.tally.samples.values()
    }

    /// The figures as one JSON object.
    pub fn json(&self) -> Value {
        let t = &self.tally;
        let non2xx: BTreeMap<String, u64> =
            t.non2xx.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        json!({
            "scenario": self.scenario.name(),
            "connections": self.connections,
            "seconds": self.seconds,
            "requests": t.requests,
            "rps": self.rps(),
            "p50_ms": self.quantile_ms(0.5),
            "p90_ms": self.quantile_ms(0.9),
            "p99_ms": self.quantile_ms(0.99),
            "max_ms": self.max_ms(),
            "non2xx": self.non2xx(),
            "errors": self.errors(),
            "refreshes": t.refreshes,
            "reconnects": t.reconnects,
            "warmup_requests": t.warmup_requests,
            "warmup_failures": t.warmup_failures,
            "non2xx_by_status": non2xx,
            "errors_by_kind": t.errors,
            "failures": self.samples().collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_tallies_report_every_answer_and_failure() {
        let mut a = Tally::new().unwrap();
        let mut b = Tally::new().unwrap();
        for ms in 1..=100 {
            a.answered(true, Duration::from_millis(ms), 200, b"");
        }
        b.answered(
            true,
            Duration::from_millis(500),
            503,
            b"{\"error\":\"busy\"}",
        );
        b.answered(false, Duration::from_millis(1), 200, b"");
        b.failed(true, "timeout", "no answer within 10s");
        b.failed(true, "timeout", "again");
        b.failed(false, "connect", "refused");
        a.merge(b).unwrap();
        let start = Instant::now();
        let summary = Summary::new(Scenario::Issue, 4, start, Duration::from_secs(10), a);
        assert_eq!(
            (summary.tally.requests, summary.non2xx(), summary.errors()),
            (101, 1, 2)
        );
        assert_eq!(
            (summary.tally.warmup_requests, summary.tally.warmup_failures),
            (1, 1)
        );
        assert!(summary.failed());
        let line = summary.result_line();
        assert!(
            line.starts_with(
                "RESULT scenario=issue connections=4 seconds=10.0 requests=101 rps=10.1 p50_ms=51."
            ),
            "{line}"
        );
        assert!(
            line.ends_with("max_ms=500.223 non2xx=1 errors=2 refreshes=0"),
            "{line}"
        );
        let samples: Vec<_> = summary.samples().cloned().collect();
        assert_eq!(
            samples,
            [
                "HTTP 503: {\"error\":\"busy\"}",
                "timeout: no answer within 10s",
                "warm-up connect: refused"
            ]
        );
        let json = summary.json();
        assert_eq!(json["non2xx_by_status"], json!({"503": 1}));
        assert_eq!(json["errors_by_kind"], json!({"timeout": 2}));
    }

    #[test]
    fn an_empty_run_reports_zeros_and_no_failure() {
        let summary = Summary::new(
            Scenario::Introspect,
            1,
            Instant::now(),
            Duration::from_secs(1),
            Tally::new().unwrap(),
        );
        assert!(!summary.failed());
        assert_eq!(
            summary.result_line(),
            "RESULT scenario=introspect connections=1 seconds=1.0 requests=0 rps=0.0 p50_ms=0.000 p90_ms=0.000 p99_ms=0.000 max_ms=0.000 non2xx=0 errors=0 refreshes=0"
        );
    }
}
