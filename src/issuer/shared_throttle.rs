//! The login throttle shared by every instance through Redis when a `redis:` block is
//! configured (conf/README.md §7): the failures of one (name, IP) are counted in one sorted set,
//! so a guesser gains nothing by spreading attempts over the instances behind a balancer.
//!
//! Same rules as the local [`Throttle`]: a slot is taken before the password is checked and given
//! back on success, over the same sliding window, with Redis's clock. When Redis does not answer
//! in time the local throttle decides, so logins never fail because Redis is down.

use std::sync::LazyLock;

use redis::Script;

use super::throttle::{Attempt, Key, Throttle, WINDOW_SECS};
use crate::redis_link;

/// Drops failures older than the window, then takes a slot or answers the seconds until one
/// frees up. KEYS: the set. ARGV: window in ms, limit, slot id.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
",
    )
});

/// A slot taken by [`begin`]; give it to [`succeeded`] when the credentials were right.
pub enum Slot {
    Local(Attempt),
    Shared { key: String, id: String },
}

/// Takes a slot for an attempt, in Redis when it answers, else in `local`.
pub async fn begin(local: &Throttle, key: Key, now: i64, max_failures: u32) -> Result<Slot, u64> {
    if let Some(link) = redis_link::link().filter(|l| l.is_connected()) {
        if let Some(mut con) = link.commands() {
            let set = link.key(&format!("login:{{{}}}", key.shared_name()));
            let id = format!("{:016x}", rand::random::<u64>());
            let mut call = BEGIN.prepare_invoke();
            call.key(&set)
                .arg(WINDOW_SECS * 1000)
                .arg(max_failures.max(1))
                .arg(&id);
            let answer = tokio::time::timeout(link.command_timeout(), call.invoke_async(&mut con));
            match answer.await {
                Ok(Ok(0i64)) => return Ok(Slot::Shared { key: set, id }),
                Ok(Ok(wait)) => return Err(u64::try_from(wait).unwrap_or(1)),
                Ok(Err(e)) => link.failed("login_throttle", &e),
                Err(_) => link.failed("login_throttle", &"timed out"),
            }
        }
    }
    local.begin(key, now, max_failures).map(Slot::Local)
}

/// The credentials were right: the slot is given back.
pub async fn succeeded(local: &Throttle, slot: Slot) {
    match slot {
        Slot::Local(attempt) => local.succeeded(attempt),
        Slot::Shared { key, id } => {
            let Some(link) = redis_link::link() else {
                return;
            };
            let Some(mut con) = link.commands() else {
                return;
            };
            let cmd = redis::cmd("ZREM").arg(&key).arg(&id).to_owned();
            let done =
                tokio::time::timeout(link.command_timeout(), cmd.query_async::<i64>(&mut con));
            match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => link.failed("login_throttle", &e),
                Err(_) => link.failed("login_throttle", &"timed out"),
            }
        }
    }
}
