//! The memory of `Idempotency-Key`s one item has seen: for each (user, key), a
//! fingerprint of the request and the outcome it got. Keys are kept for the
//! retention period (24 h by the API) and at most `capacity` of them per item, so
//! an item's memory has a bound; past it the oldest keys are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::ids::{IdempotencyKey, UserId};
use super::refusal::Refusal;
use super::time::UnixMillis;

/// How long a key is remembered (API.md: 24 h).
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Keys remembered per item at most: 1M keys is ~200 MB in the worst case, more
/// than any one drop sees in a day, and far from the machine's memory.
pub const IDEMPOTENCY_KEYS_PER_ITEM_MAX: usize = 1_000_000;

#[derive(Debug)]
struct Entry<V> {
    fingerprint: u64,
    outcome: V,
}

/// What a request with a key should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, V> {
    /// First time: decide it.
    New,
    /// Same key, same request: answer with what the first attempt got.
    Replay(&'a V),
    /// Same key, different request: refuse.
    Reused,
}

/// The answer to a request that may carry a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// Something new was made (remembered if the request had a key).
    Made(T),
    /// A new refusal (remembered if the request had a key).
    Refused(Refusal),
    /// Nothing changed: a replay of an earlier keyed request, or a reused key.
    Answered(Result<T, Refusal>),
}

#[derive(Debug)]
pub struct IdempotencyLedger<V> {
    entries: HashMap<(UserId, IdempotencyKey), Entry<V>>,
    /// Keys in the order they were recorded, for expiry and eviction.
    recorded: VecDeque<(UnixMillis, UserId, IdempotencyKey)>,
    capacity: usize,
}

impl<V> Default for IdempotencyLedger<V> {
    fn default() -> Self {
        IdempotencyLedger::with_capacity(IDEMPOTENCY_KEYS_PER_ITEM_MAX)
    }
}

impl<V> IdempotencyLedger<V> {
    pub fn with_capacity(capacity: usize) -> Self {
        assert!(capacity > 0);
        IdempotencyLedger {
            entries: HashMap::new(),
            recorded: VecDeque::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn lookup(&self, user: &UserId, key: &IdempotencyKey, fingerprint: u64) -> Lookup<'_, V> {
        // Cloning the two Arcs for the lookup is cheaper than a borrowed-key map.
        match self.entries.get(&(user.clone(), key.clone())) {
            None => Lookup::New,
            Some(entry) if entry.fingerprint == fingerprint => Lookup::Replay(&entry.outcome),
            Some(_) => Lookup::Reused,
        }
    }

    /// Remembers a decided request. Recording a key twice keeps the first outcome.
    pub fn record(
        &mut self,
        user: UserId,
        key: IdempotencyKey,
        fingerprint: u64,
        outcome: V,
        recorded_at: UnixMillis,
    ) {
        let slot = (user.clone(), key.clone());
        if self.entries.contains_key(&slot) {
            return;
        }
        while self.entries.len() >= self.capacity {
            self.forget_oldest();
        }
        self.entries.insert(
            slot,
            Entry {
                fingerprint,
                outcome,
            },
        );
        self.recorded.push_back((recorded_at, user, key));
    }

    /// Forgets keys recorded before `now - retention`.
    pub fn expire(&mut self, now: UnixMillis, retention: Duration) {
        let horizon = now.minus(retention);
        while self
            .recorded
            .front()
            .is_some_and(|(at, _, _)| *at < horizon)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, user, key)) = self.recorded.pop_front() {
            self.entries.remove(&(user, key));
        }
    }
}

impl<T: Clone> IdempotencyLedger<Result<T, Refusal>> {
    /// Runs `decide` unless the key was seen before, and remembers its outcome
    /// under the key. `fingerprint` stands for the request body.
    pub fn decide(
        &mut self,
        user: &UserId,
        key: Option<&IdempotencyKey>,
        fingerprint: u64,
        now: UnixMillis,
        decide: impl FnOnce() -> Result<T, Refusal>,
    ) -> Decision<T> {
        let Some(key) = key else {
            return match decide() {
                Ok(made) => Decision::Made(made),
                Err(refusal) => Decision::Refused(refusal),
            };
        };
        match self.lookup(user, key, fingerprint) {
            Lookup::New => {}
            Lookup::Replay(outcome) => return Decision::Answered(outcome.clone()),
            Lookup::Reused => return Decision::Answered(Err(Refusal::IdempotencyKeyReused)),
        }
        let outcome = decide();
        self.record(user.clone(), key.clone(), fingerprint, outcome.clone(), now);
        match outcome {
            Ok(made) => Decision::Made(made),
            Err(refusal) => Decision::Refused(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(text).unwrap()
    }

    #[test]
    fn replays_same_request_and_refuses_a_different_one() {
        let mut ledger = IdempotencyLedger::with_capacity(10);
        assert_eq!(ledger.lookup(&user("a"), &key("k"), 1), Lookup::New);
        ledger.record(user("a"), key("k"), 1, "first", UnixMillis(0));
        assert_eq!(
            ledger.lookup(&user("a"), &key("k"), 1),
            Lookup::Replay(&"first")
        );
        assert_eq!(ledger.lookup(&user("a"), &key("k"), 2), Lookup::Reused);
        // Keys are per user.
        assert_eq!(ledger.lookup(&user("b"), &key("k"), 1), Lookup::New);
        ledger.record(user("a"), key("k"), 2, "second", UnixMillis(1));
        assert_eq!(
            ledger.lookup(&user("a"), &key("k"), 1),
            Lookup::Replay(&"first")
        );
    }

    #[test]
    fn expires_by_age_and_evicts_oldest_at_capacity() {
        let mut ledger = IdempotencyLedger::with_capacity(2);
        ledger.record(user("a"), key("1"), 0, (), UnixMillis(0));
        ledger.record(user("a"), key("2"), 0, (), UnixMillis(10));
        ledger.record(user("a"), key("3"), 0, (), UnixMillis(20));
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.lookup(&user("a"), &key("1"), 0), Lookup::New);
        ledger.expire(UnixMillis(25), Duration::from_millis(10));
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.lookup(&user("a"), &key("3"), 0), Lookup::Replay(&()));
    }
}
