//! What a stranger guessing passwords can cost: the sign-in throttle, and the one budget
//! every argon2 hash and verification runs under.
//!
//! **The throttle** counts failed sign-ins per account (the keyed hash of the email, so a
//! made-up email is counted like a real one), per client address (an IPv6 address by its
//! /64), and per account and address together. After `failures_free` failures the next
//! attempt must wait `delay_seconds_first`, doubling with each further failure up to
//! `delay_seconds_max`; while it waits it is answered 429 with `Retry-After` and no
//! argon2 runs. Failures are forgotten after twice `delay_seconds_max` without one.
//!
//! No lockout is indefinite for the person: the account's delay applies only to an
//! address that itself failed for that account recently. A correct password from an
//! address with no recent failure for the account is checked whatever the account's
//! count; the stranger's own addresses stay throttled. A person who mistypes while their
//! account is under attack waits out the account's delay (at most `delay_seconds_max`)
//! from that address only. The price: each new address a stranger brings buys one guess
//! at a throttled account, and each address is itself throttled across all accounts.
//!
//! Each table holds at most `entries_max` entries; a full table drops forgotten entries
//! first, then the one whose last failure is oldest. Entries are only ever made by a
//! failure, which costs an argon2 verification, so spraying emails or addresses is paced
//! by the hashing budget. The tables are memory: per node, and a restart forgets them.
//!
//! **The hashing budget** is a semaphore of `--password-hash-memory-mib-max` permits, one
//! per MiB; a hash takes as many as its memory cost. What cannot get its permits within
//! `--password-hash-wait-ms-max` is answered 503 with `Retry-After`. Hashes run on the
//! blocking pool, never on an HTTP worker.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use writ_schemas::{Digest, Timestamp};

/// Failures of one account before its sign-ins are delayed.
pub const SIGN_IN_FAILURES_FREE_DEFAULT: u32 = 5;
/// Failures from one address, over all accounts, before its sign-ins are delayed.
pub const SIGN_IN_ADDRESS_FAILURES_FREE_DEFAULT: u32 = 20;
/// The first delay, in seconds; it doubles with each further failure.
pub const SIGN_IN_DELAY_SECONDS_FIRST_DEFAULT: u64 = 1;
/// The longest delay, in seconds: 15 minutes.
pub const SIGN_IN_DELAY_SECONDS_MAX_DEFAULT: u64 = 900;
/// Entries each throttle table holds at most.
pub const SIGN_IN_THROTTLE_ENTRIES_MAX_DEFAULT: u64 = 10_000;
/// Memory all argon2 hashes running at once may take, in MiB (13 of the default 19 MiB).
pub const PASSWORD_HASH_MEMORY_MIB_MAX_DEFAULT: u32 = 256;
/// How long a sign-in waits for hashing memory before it is answered 503, in ms.
pub const PASSWORD_HASH_WAIT_MS_MAX_DEFAULT: u64 = 1_000;

/// The throttle's settings.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Failures of one account before delays.
    pub failures_free: u32,
    /// Failures from one address before delays.
    pub address_failures_free: u32,
    /// The first delay.
    pub delay_seconds_first: u64,
    /// The cap on any delay.
    pub delay_seconds_max: u64,
    /// Entries per table.
    pub entries_max: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            failures_free: SIGN_IN_FAILURES_FREE_DEFAULT,
            address_failures_free: SIGN_IN_ADDRESS_FAILURES_FREE_DEFAULT,
            delay_seconds_first: SIGN_IN_DELAY_SECONDS_FIRST_DEFAULT,
            delay_seconds_max: SIGN_IN_DELAY_SECONDS_MAX_DEFAULT,
            entries_max: SIGN_IN_THROTTLE_ENTRIES_MAX_DEFAULT as usize,
        }
    }
}

/// Failures in a row of one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first_at: Timestamp,
    last_at: Timestamp,
}

/// A bounded map of failures.
struct Table<K> {
    entries: HashMap<K, Failures>,
    entries_max: usize,
    forget_after_seconds: i64,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limits: &ThrottleLimits) -> Table<K> {
        Table {
            entries: HashMap::new(),
            entries_max: limits.entries_max.max(1),
            forget_after_seconds: i64::try_from(limits.delay_seconds_max.saturating_mul(2))
                .unwrap_or(i64::MAX),
        }
    }

    fn live(&self, failures: &Failures, now: Timestamp) -> bool {
        now < failures.last_at.plus_seconds(self.forget_after_seconds)
    }

    fn get(&self, key: &K, now: Timestamp) -> Option<Failures> {
        self.entries
            .get(key)
            .copied()
            .filter(|failures| self.live(failures, now))
    }

    /// Counts one more failure; the count after it, and when the run began.
    fn fail(&mut self, key: &K, now: Timestamp) -> Failures {
        let counted = match self.get(key, now) {
            Some(f) => Failures {
                count: f.count.saturating_add(1),
                first_at: f.first_at,
                last_at: now,
            },
            None => Failures {
                count: 1,
                first_at: now,
                last_at: now,
            },
        };
        if !self.entries.contains_key(key) && self.entries.len() >= self.entries_max {
            self.make_room(now);
        }
        self.entries.insert(key.clone(), counted);
        counted
    }

    fn make_room(&mut self, now: Timestamp) {
        let forget = self.forget_after_seconds;
        self.entries
            .retain(|_, failures| now < failures.last_at.plus_seconds(forget));
        if self.entries.len() >= self.entries_max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, failures)| failures.last_at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

struct Tables {
    accounts: Table<Digest>,
    addresses: Table<IpAddr>,
    pairs: Table<(Digest, IpAddr)>,
}

/// Per-account and per-address failed sign-ins.
pub struct SignInThrottle {
    limits: ThrottleLimits,
    tables: Mutex<Tables>,
}

/// A run of failures that just reached the account's threshold: recorded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossed {
    /// Failures counted.
    pub failures: u32,
    /// When the first failed.
    pub first_failure_at: Timestamp,
}

impl SignInThrottle {
    /// An empty throttle.
    pub fn new(limits: ThrottleLimits) -> SignInThrottle {
        SignInThrottle {
            limits,
            tables: Mutex::new(Tables {
                accounts: Table::new(&limits),
                addresses: Table::new(&limits),
                pairs: Table::new(&limits),
            }),
        }
    }

    /// The seconds still to wait after `failures`, given the failures let through free.
    fn wait(&self, failures: Option<Failures>, free: u32, now: Timestamp) -> Option<u64> {
        let failures = failures?;
        let beyond = failures.count.checked_sub(free)?;
        let delay = self
            .limits
            .delay_seconds_first
            .saturating_mul(1u64 << beyond.min(62))
            .min(self.limits.delay_seconds_max);
        let until = failures
            .last_at
            .plus_seconds(i64::try_from(delay).unwrap_or(i64::MAX));
        let left_micros = until.unix_micros().saturating_sub(now.unix_micros());
        let left_micros = u64::try_from(left_micros).ok().filter(|left| *left > 0)?;
        Some(left_micros.div_ceil(1_000_000))
    }

    /// Whether a sign-in to `account` from `address` may be checked now; if not, the
    /// seconds to wait.
    pub fn check(&self, account: Digest, address: IpAddr, now: Timestamp) -> Result<(), u64> {
        let tables = self.tables.lock();
        let from_address = tables.addresses.get(&address, now);
        if let Some(wait) = self.wait(from_address, self.limits.address_failures_free, now) {
            return Err(wait);
        }
        let of_account = tables.accounts.get(&account, now);
        if let Some(wait) = self.wait(of_account, self.limits.failures_free, now) {
            // The escape: an address that has not failed for this account is not held to
            // the account's delay, so a stranger's guesses never keep the person out.
            if tables.pairs.get(&(account, address), now).is_some() {
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Counts a failed sign-in; `Some` when it brought the account to its threshold.
    pub fn failed(&self, account: Digest, address: IpAddr, now: Timestamp) -> Option<Crossed> {
        let mut tables = self.tables.lock();
        tables.addresses.fail(&address, now);
        tables.pairs.fail(&(account, address), now);
        let counted = tables.accounts.fail(&account, now);
        (counted.count == self.limits.failures_free).then_some(Crossed {
            failures: counted.count,
            first_failure_at: counted.first_at,
        })
    }

    /// A correct password: this address's failures for the account are forgiven. The
    /// account's count stays, so a stranger gains no free guesses from the person's
    /// sign-in.
    pub fn succeeded(&self, account: Digest, address: IpAddr) {
        self.tables.lock().pairs.forget(&(account, address));
    }
}

/// The address a throttle counts a request under: the peer, or with `trust_forwarded_for`
/// the last address in `X-Forwarded-For` (the one the proxy in front of writ saw). An
/// IPv6 address counts by its /64, which one subscriber usually holds whole.
pub fn client_address(request: &actix_web::HttpRequest, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| {
            request
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|part| part.trim().parse::<IpAddr>().ok())
                .last()
        })
        .flatten();
    let address = forwarded
        .or_else(|| request.peer_addr().map(|peer| peer.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
        v4 => v4,
    }
}

/// The memory budget every argon2 hash and verification runs under.
pub struct PasswordHashing {
    permits: Arc<Semaphore>,
    permits_max: u32,
    wait: Duration,
}

/// No hashing memory came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashingBusy {
    /// Others' hashes hold the budget.
    #[error(
        "writ is checking as many passwords as its memory budget allows; try again in a second"
    )]
    Busy,
    /// This hash alone needs more than the whole budget.
    #[error("this password hash needs {0} MiB, more than the server's whole hashing budget")]
    TooLarge(u32),
}

impl PasswordHashing {
    /// A budget of `memory_mib_max` MiB; a hash waits at most `wait` for its share.
    pub fn new(memory_mib_max: u32, wait: Duration) -> PasswordHashing {
        PasswordHashing {
            permits: Arc::new(Semaphore::new(memory_mib_max as usize)),
            permits_max: memory_mib_max,
            wait,
        }
    }

    /// Waits for room for a hash of `memory_kib` of argon2 memory in the budget.
    pub async fn room(&self, memory_kib: u32) -> Result<HashRoom, HashingBusy> {
        let mib = memory_kib.div_ceil(1024).max(1);
        if mib > self.permits_max {
            return Err(HashingBusy::TooLarge(mib));
        }
        let permits = Arc::clone(&self.permits);
        let permit = tokio::time::timeout(self.wait, permits.acquire_many_owned(mib))
            .await
            .map_err(|_| HashingBusy::Busy)?
            .map_err(|_| HashingBusy::Busy)?;
        Ok(HashRoom(permit))
    }

    /// Runs `work`, which takes `memory_kib` of argon2 memory, once there is room for it.
    pub async fn run<T: Send + 'static>(
        &self,
        memory_kib: u32,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingBusy> {
        self.room(memory_kib).await?.run(work).await
    }
}

/// Room in the hashing budget for one hash.
pub struct HashRoom(tokio::sync::OwnedSemaphorePermit);

impl HashRoom {
    /// Runs `work` on the blocking pool. The room is held until `work` ends, even if the
    /// request that asked is dropped meanwhile.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingBusy> {
        let permit = self.0;
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            work()
        })
        .await
        .map_err(|_| HashingBusy::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000)
            .unwrap_or_else(|| unreachable!())
            .plus_seconds(seconds)
    }

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            failures_free: 3,
            address_failures_free: 100,
            delay_seconds_first: 10,
            delay_seconds_max: 60,
            entries_max: 4,
        }
    }

    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const PERSON: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn signin_delays_double_after_the_free_failures_up_to_the_cap() {
        let throttle = SignInThrottle::new(limits());
        let ada = Digest::of(b"ada");
        for n in 1..=2 {
            assert_eq!(throttle.failed(ada, STRANGER, at(0)), None, "failure {n}");
            assert_eq!(throttle.check(ada, STRANGER, at(0)), Ok(()));
        }
        let crossed = throttle.failed(ada, STRANGER, at(0));
        assert_eq!(
            crossed,
            Some(Crossed {
                failures: 3,
                first_failure_at: at(0)
            })
        );
        assert_eq!(throttle.check(ada, STRANGER, at(0)), Err(10));
        assert_eq!(throttle.check(ada, STRANGER, at(10)), Ok(()));
        assert_eq!(throttle.failed(ada, STRANGER, at(10)), None);
        assert_eq!(throttle.check(ada, STRANGER, at(10)), Err(20));
        for _ in 0..10 {
            throttle.failed(ada, STRANGER, at(100));
        }
        assert_eq!(throttle.check(ada, STRANGER, at(100)), Err(60));
    }

    #[test]
    fn signin_a_strangers_guesses_do_not_hold_the_person_s_own_address() {
        let throttle = SignInThrottle::new(limits());
        let ada = Digest::of(b"ada");
        for _ in 0..20 {
            throttle.failed(ada, STRANGER, at(0));
        }
        assert_eq!(throttle.check(ada, STRANGER, at(1)), Err(59));
        assert_eq!(throttle.check(ada, PERSON, at(1)), Ok(()));
        // A mistype from the person's address holds it to the account's delay too.
        throttle.failed(ada, PERSON, at(1));
        assert_eq!(throttle.check(ada, PERSON, at(1)), Err(60));
        throttle.succeeded(ada, PERSON);
        assert_eq!(throttle.check(ada, PERSON, at(2)), Ok(()));
    }

    #[test]
    fn signin_tables_stay_within_their_entries_max() {
        let throttle = SignInThrottle::new(limits());
        for n in 0..50u8 {
            let address = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n));
            throttle.failed(Digest::of(&[n]), address, at(i64::from(n)));
        }
        let tables = throttle.tables.lock();
        assert!(tables.accounts.entries.len() <= 4);
        assert!(tables.addresses.entries.len() <= 4);
        assert!(tables.pairs.entries.len() <= 4);
    }

    #[test]
    fn signin_failures_are_forgotten_after_twice_the_longest_delay() {
        let throttle = SignInThrottle::new(limits());
        let ada = Digest::of(b"ada");
        for _ in 0..5 {
            throttle.failed(ada, STRANGER, at(0));
        }
        assert_eq!(
            throttle.check(ada, STRANGER, at(39)),
            Err(1),
            "5 failures: 40 s"
        );
        assert_eq!(throttle.check(ada, STRANGER, at(120)), Ok(()));
        let again = throttle.failed(ada, STRANGER, at(120));
        assert_eq!(again, None, "a new run starts at one failure");
    }
}
