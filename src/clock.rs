//! Where time comes from. The ledger and every decision take time as a value; this is the
//! one place that reads the system clock, and tests swap in a clock they move by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use writ_schemas::Timestamp;

/// A source of the current instant.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that stands still until moved (microseconds since the epoch).
    Manual(Arc<AtomicI64>),
    /// The system clock shifted by a number of seconds (for tests of a server process,
    /// which may not sleep: "two hours later" is a restart with an offset).
    Offset(i64),
}

impl Clock {
    /// A manual clock reading `start`.
    pub fn manual(start: Timestamp) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start.unix_micros())))
    }

    /// The current instant (microsecond precision).
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::from_datetime(chrono::Utc::now()),
            Clock::Offset(seconds) => {
                Timestamp::from_datetime(chrono::Utc::now()).plus_seconds(*seconds)
            }
            Clock::Manual(micros) => Timestamp::from_unix_micros(micros.load(Ordering::SeqCst))
                .unwrap_or_else(|| {
                    unreachable!("a manual clock only holds values it was given as timestamps")
                }),
        }
    }

    /// Moves a manual clock forward by `seconds` (the system clock moves by itself).
    pub fn advance(&self, seconds: i64) {
        if let Clock::Manual(micros) = self {
            micros.fetch_add(seconds.saturating_mul(1_000_000), Ordering::SeqCst);
        }
    }
}
