//! Failed-login throttling per (account name, client IP) over a sliding 15-minute window.
//!
//! An attempt takes a slot *before* the password is checked and gives it back only on success,
//! so parallel guesses cannot overshoot the limit while argon2 runs. A success does not wipe
//! earlier failures (they age out), so a guesser sharing an IP with the real user gains nothing
//! from the user's logins. Keys are hashed: attacker-chosen usernames cost 32 bytes each, and the
//! map is capped so a spray of names cannot grow it without bound.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The window conf/README.md §6 fixes ("per username+IP per 15 minutes").
pub const WINDOW_SECS: i64 = 15 * 60;

/// Upper bound on tracked keys; when full, expired keys go first, then the stalest one.
const MAX_KEYS: usize = 100_000;

/// What is being logged into: users and clients are separate namespaces.
#[derive(Clone, Copy, Debug)]
pub enum Subject {
    User,
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    name: [u8; 32],
    ip: IpAddr,
}

impl Key {
    pub fn new(subject: Subject, name: &str, ip: IpAddr) -> Key {
        let mut h = Sha256::new();
        h.update(match subject {
            Subject::User => b"user\0",
            Subject::Client => b"clnt\0",
        });
        h.update(name.as_bytes());
        Key {
            name: h.finalize().into(),
            ip,
        }
    }
}

impl Key {
    /// The key's name in Redis when the throttle is shared (conf/README.md §7): the hashed name
    /// and the IP, never the name itself.
    pub fn shared_name(&self) -> String {
        format!("{}:{}", hex::encode(self.name), self.ip)
    }
}

/// A slot taken by [`Throttle::begin`]; hand it to [`Throttle::succeeded`] when the credentials
/// were right. Dropping it leaves the attempt counted as a failure.
#[derive(Debug)]
pub struct Attempt {
    key: Key,
    at: i64,
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, VecDeque<i64>>>,
}

impl Throttle {
    /// Takes a slot for an attempt at `now`, or answers how many seconds until one frees up.
    pub fn begin(&self, key: Key, now: i64, max_failures: u32) -> Result<Attempt, u64> {
        let max = usize::try_from(max_failures.max(1)).unwrap_or(usize::MAX);
        let mut map = self.failures.lock();
        if !map.contains_key(&key) && map.len() >= MAX_KEYS {
            make_room(&mut map, now);
        }
        let times = map.entry(key.clone()).or_default();
        while times.front().is_some_and(|&t| t <= now - WINDOW_SECS) {
            times.pop_front();
        }
        if times.len() >= max {
            let oldest = times.front().copied().unwrap_or(now);
            let wait = (oldest + WINDOW_SECS - now).max(1);
            return Err(u64::try_from(wait).unwrap_or(1));
        }
        times.push_back(now);
        Ok(Attempt { key, at: now })
    }

    /// The credentials were right: the attempt's slot is given back.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.failures.lock();
        if let Some(times) = map.get_mut(&attempt.key) {
            if let Some(pos) = times.iter().rposition(|&t| t == attempt.at) {
                times.remove(pos);
            }
            if times.is_empty() {
                map.remove(&attempt.key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().len()
    }
}

fn make_room(map: &mut HashMap<Key, VecDeque<i64>>, now: i64) {
    map.retain(|_, times| times.back().is_some_and(|&t| t > now - WINDOW_SECS));
    if map.len() >= MAX_KEYS {
        let stalest = map
            .iter()
            .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
            .map(|(k, _)| k.clone());
        if let Some(k) = stalest {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_after_max_failures_until_the_oldest_ages_out() {
        let t = Throttle::default();
        let k = || Key::new(Subject::User, "alice", ip("192.0.2.1"));
        for i in 0..5 {
            assert!(t.begin(k(), 1000 + i, 5).is_ok());
        }
        assert_eq!(t.begin(k(), 1010, 5).unwrap_err(), 890);
        // Another IP, another user, and the client namespace are unaffected.
        assert!(t
            .begin(Key::new(Subject::User, "alice", ip("192.0.2.2")), 1010, 5)
            .is_ok());
        assert!(t
            .begin(Key::new(Subject::User, "bob", ip("192.0.2.1")), 1010, 5)
            .is_ok());
        assert!(t
            .begin(Key::new(Subject::Client, "alice", ip("192.0.2.1")), 1010, 5)
            .is_ok());
        // The first failure leaves the window at 1900.
        assert_eq!(t.begin(k(), 1899, 5).unwrap_err(), 1);
        assert!(t.begin(k(), 1900, 5).is_ok());
    }

    #[test]
    fn success_returns_its_slot_only() {
        let t = Throttle::default();
        let k = || Key::new(Subject::User, "alice", ip("192.0.2.1"));
        for _ in 0..4 {
            assert!(t.begin(k(), 1000, 5).is_ok());
        }
        let ok = t.begin(k(), 1001, 5).unwrap();
        t.succeeded(ok);
        assert!(t.begin(k(), 1002, 5).is_ok());
        assert!(t.begin(k(), 1003, 5).is_err());
    }

    #[test]
    fn map_is_bounded() {
        let t = Throttle::default();
        for i in 0..(MAX_KEYS + 10) {
            let key = Key::new(Subject::User, &i.to_string(), ip("192.0.2.1"));
            assert!(t.begin(key, 1000, 5).is_ok());
        }
        assert_eq!(t.len(), MAX_KEYS);
    }
}
