//! The per-agent rate limit on the token endpoint: a GCRA limiter per agent (`governor`),
//! at the server's default rate or the one the agent's policy sets.
//!
//! It counts only requests whose client authenticated, so nobody can spend an agent's
//! budget by presenting its client id with a wrong secret. It is memory, not ledger: a
//! restart forgets it, which at worst grants one extra burst.

use std::collections::HashMap;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;
use writ_schemas::ClientId;

/// The server's default: token requests per minute per agent, as a burst that refills
/// evenly over the minute.
pub const TOKEN_REQUESTS_PER_MINUTE_DEFAULT: u32 = 600;

/// Per-agent token request limiters.
pub struct TokenRateLimits {
    default_per_minute: NonZeroU32,
    agents: RwLock<HashMap<ClientId, Limiter>>,
    clock: DefaultClock,
}

struct Limiter {
    per_minute: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

impl Limiter {
    fn new(per_minute: NonZeroU32) -> Limiter {
        Limiter {
            per_minute,
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        }
    }
}

impl TokenRateLimits {
    /// Limits at `default_per_minute` for agents whose policy sets none (0 is taken as 1).
    pub fn new(default_per_minute: u32) -> TokenRateLimits {
        TokenRateLimits {
            default_per_minute: NonZeroU32::new(default_per_minute).unwrap_or(NonZeroU32::MIN),
            agents: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `client`'s budget (`policy_per_minute` overrides the
    /// default); when it is spent, the whole seconds until the next request is allowed.
    pub fn check(&self, client: &ClientId, policy_per_minute: Option<u32>) -> Result<(), u64> {
        let per_minute = policy_per_minute
            .and_then(NonZeroU32::new)
            .unwrap_or(self.default_per_minute);
        let decided = {
            let agents = self.agents.read();
            agents
                .get(client)
                .filter(|known| known.per_minute == per_minute)
                .map(|known| known.limiter.check())
        };
        let decided = match decided {
            Some(decided) => decided,
            // First request, or the policy changed: a fresh budget at the new rate.
            None => {
                let mut agents = self.agents.write();
                let known = agents
                    .entry(client.clone())
                    .and_modify(|known| {
                        if known.per_minute != per_minute {
                            *known = Limiter::new(per_minute);
                        }
                    })
                    .or_insert_with(|| Limiter::new(per_minute));
                known.limiter.check()
            }
        };
        decided.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_is_refused_with_a_wait_and_agents_do_not_share_budgets() {
        let limits = TokenRateLimits::new(3);
        let (a, b) = (ClientId("a".into()), ClientId("b".into()));
        for _ in 0..3 {
            assert_eq!(limits.check(&a, None), Ok(()));
        }
        // 3 a minute refills one every 20 s.
        let refused = limits.check(&a, None);
        assert!(matches!(refused, Err(1..=20)), "{refused:?}");
        assert_eq!(limits.check(&b, None), Ok(()));
    }

    #[test]
    fn a_policy_rate_replaces_the_default() {
        let limits = TokenRateLimits::new(1);
        let a = ClientId("a".into());
        assert_eq!(limits.check(&a, None), Ok(()));
        assert!(limits.check(&a, None).is_err());
        for _ in 0..5 {
            assert_eq!(limits.check(&a, Some(5)), Ok(()));
        }
        assert!(limits.check(&a, Some(5)).is_err());
    }
}
