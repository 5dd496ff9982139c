//! `revocation.store: redis`: the list shared by every instance connected to the same Redis and
//! prefix (conf/README.md §7).
//!
//! Each change is one atomic script: it updates a snapshot hash (the live list, merged like the
//! file store merges) and appends the change to a stream. Every instance follows the stream with
//! a blocking `XREAD` from the last id it applied, on a connection of its own, in a background
//! task; the request path only ever reads the in-memory [`RevocationList`]. After a lost
//! connection the follower resumes from that id, or reloads the snapshot when the stream was
//! trimmed past it, and only then reports ready again, so a connected, ready instance never
//! misses an acknowledged change.
//!
//! A change is answered only once Redis stored it *and* this instance's follower applied it, so
//! changes apply here in stream order, exactly as on every other instance: applying a writer's
//! own change ahead of an older one from the stream could let the older one undo it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};
use tokio::sync::watch;

use crate::clock::unix_now;
use crate::redis_link::{RedisLink, MAX_BACKOFF};
use crate::revocation::list::RevocationList;
use crate::revocation::service::{apply, apply_in_one_step};
use crate::revocation::store::Record;

/// How long one `XREAD` waits for news before asking again.
const BLOCK: Duration = Duration::from_secs(1);
/// At most this many stream entries per read; a longer backlog takes several.
const BATCH: usize = 1000;
/// Stream entries older than this are trimmed; they stay in force through the snapshot. An
/// instance disconnected for longer reloads the whole snapshot instead of the missed entries.
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A writer waits this long for its own change to come back through the stream before it
/// applies the change directly (the follower lost its connection in between).
const OWN_CHANGE_WAIT: Duration = Duration::from_secs(1);

/// Merges into the snapshot (the larger cut-off, the later expiry, "until deleted" wins), trims
/// the stream, appends the change and returns its id. Times come from Redis itself.
/// KEYS: stream, snapshot, trim mark. ARGV: op, field, before, expires ("" = never), record,
/// retention in ms.
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'revoke' then
  local b, e = ARGV[3], ARGV[4]
  local old = redis.call('HGET', KEYS[2], ARGV[2])
  if old then
    local sep = string.find(old, ':', 1, true)
    local ob, oe = string.sub(old, 1, sep - 1), string.sub(old, sep + 1)
    if tonumber(ob) > tonumber(b) then b = ob end
    if e == '' or oe == '' then e = '' elseif tonumber(oe) > tonumber(e) then e = oe end
  end
  redis.call('HSET', KEYS[2], ARGV[2], b .. ':' .. e)
else
  redis.call('HDEL', KEYS[2], ARGV[2])
end
local min_id = now_ms - tonumber(ARGV[6])
if min_id > 0 and redis.call('XTRIM', KEYS[1], 'MINID', min_id) > 0 then
  redis.call('SET', KEYS[3], min_id)
end
return redis.call('XADD', KEYS[1], '*', 'r', ARGV[5])
",
    )
});

/// Where a follower starts: `{'full'}` for a first load or when the stream was trimmed past
/// `ARGV[1]` (the follower then reads the snapshot in pieces, [`RedisRevocations::load_all`]),
/// else `{'tail', ARGV[1], entries after it, lost}`, where `lost` is 1 when the stream no
/// longer holds the entry `ARGV[1]` names nor any later one: Redis lost data (restarted without
/// persistence).
/// KEYS: stream, snapshot, trim mark. ARGV: last applied id ("" = none).
static CATCH_UP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function full()
  return {'full'}
end
if ARGV[1] == '' then return full() end
local mark = redis.call('GET', KEYS[3])
if mark and tonumber(string.match(ARGV[1], '^(%d+)')) < tonumber(mark) then return full() end
local function id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lost = 1
if #newest > 0 then
  local ams, aseq = id(ARGV[1])
  local nms, nseq = id(newest[1][1])
  if nms > ams or (nms == ams and nseq >= aseq) then lost = 0 end
end
if ARGV[1] == '0-0' then lost = 0 end
return {'tail', ARGV[1], redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', 10000), lost}
",
    )
});

/// Snapshot entries per `HSCAN` of a full load.
const SCAN_COUNT: usize = 5000;

/// Deletes snapshot entries found expired, each only if it still holds the value that was read
/// (a writer may have revoked it again meanwhile). KEYS: snapshot. ARGV: field, value, ...
static DROP_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
",
    )
});

/// What a follower does after its catch-up call.
enum CatchUp {
    /// Caught up to this stream id.
    At(String),
    /// Load the whole list ([`RedisRevocations::load_all`]).
    Full,
}

/// Whether a snapshot value (`before:expires`, `expires` empty for never) has expired at `now`.
fn snapshot_expired(value: &str, now: i64) -> bool {
    value
        .split_once(':')
        .and_then(|(_, e)| e.parse::<i64>().ok())
        .is_some_and(|e| e < now)
}

/// A stream id, ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct StreamPos(u64, u64);

impl StreamPos {
    fn parse(id: &str) -> Option<StreamPos> {
        let (ms, seq) = id.split_once('-')?;
        Some(StreamPos(ms.parse().ok()?, seq.parse().ok()?))
    }
}

/// Why a change was not stored; it is not in force either.
#[derive(Debug, thiserror::Error)]
pub enum RedisWriteError {
    #[error("redis is not reachable")]
    Unavailable,
    #[error("redis answered the change with an unexpected id")]
    BadReply,
}

pub struct RedisRevocations {
    link: Arc<RedisLink>,
    list: Arc<RevocationList>,
    stream: String,
    snapshot: String,
    trim_mark: String,
    /// The last stream id applied to `list`.
    applied: watch::Sender<StreamPos>,
    /// Loaded and following; false before the first load and after a lost connection until
    /// caught up.
    ready: AtomicBool,
    /// Held around every change to `list` made from here, so a writer's direct apply (after
    /// [`OWN_CHANGE_WAIT`]) and the follower do not interleave.
    apply_lock: Mutex<()>,
}

impl RedisRevocations {
    pub fn new(link: Arc<RedisLink>, list: Arc<RevocationList>) -> RedisRevocations {
        // One hash tag for the three keys: a script may only touch keys of one cluster slot.
        let stream = link.key("{revocations}:log");
        let snapshot = link.key("{revocations}:list");
        let trim_mark = link.key("{revocations}:trimmed");
        RedisRevocations {
            link,
            list,
            stream,
            snapshot,
            trim_mark,
            applied: watch::Sender::new(StreamPos::default()),
            ready: AtomicBool::new(false),
            apply_lock: Mutex::new(()),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Stores `record` in Redis, then waits until it is in force here.
    pub async fn write(&self, record: &Record) -> Result<(), RedisWriteError> {
        let Some(mut con) = self.link.commands() else {
            return Err(RedisWriteError::Unavailable);
        };
        let (op, field, before, expires) = snapshot_entry(record);
        let body = serde_json::to_string(record).map_err(|_| RedisWriteError::BadReply)?;
        let mut call = WRITE.prepare_invoke();
        call.key(&self.stream)
            .key(&self.snapshot)
            .key(&self.trim_mark)
            .arg(op)
            .arg(field)
            .arg(before)
            .arg(expires)
            .arg(body)
            .arg(RETENTION.as_millis() as u64);
        // Room for one reconnect, then the command itself. A connection Redis dropped (it
        // restarted) fails the first command and reconnects, so a failure is tried once more:
        // applying a change twice ends in the same state.
        let limit = self.link.connect_timeout() + self.link.command_timeout();
        let attempt = async {
            match call.invoke_async::<String>(&mut con).await {
                Ok(id) => Ok(id),
                Err(first) => {
                    self.link.failed("revocation_write", &first);
                    call.invoke_async::<String>(&mut con).await
                }
            }
        };
        let id = match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                self.link.failed("revocation_write", &e);
                return Err(RedisWriteError::Unavailable);
            }
            Err(_) => {
                self.link.failed("revocation_write", &"timed out");
                return Err(RedisWriteError::Unavailable);
            }
        };
        let pos = StreamPos::parse(&id).ok_or(RedisWriteError::BadReply)?;
        let mut applied = self.applied.subscribe();
        let caught_up = tokio::time::timeout(OWN_CHANGE_WAIT, applied.wait_for(|p| *p >= pos));
        if !matches!(caught_up.await, Ok(Ok(_))) {
            // Stored, so it is answered for; the follower re-applies it when it catches up.
            let _in_order = self.apply_lock.lock();
            apply(&self.list, record);
        }
        Ok(())
    }

    /// Follows the stream until shutdown; `loaded` is called once, after the first load attempt
    /// (successful or not), so start-up does not wait for a Redis that is down.
    pub async fn follow(&self, mut shutdown: ShutdownWatch, loaded: impl FnOnce()) {
        let mut loaded = Some(loaded);
        let mut pos: Option<String> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let (result, caught_up) = self.session(&mut pos, &mut loaded, &mut shutdown).await;
            self.ready.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => return,
                Err(e) => self.link.down("revocation_follow", &e),
            }
            if let Some(f) = loaded.take() {
                f();
            }
            if caught_up {
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's worth of following: catch up, then read the stream until the connection
    /// fails (`Err`) or the process shuts down (`Ok`). The flag says whether it caught up.
    async fn session(
        &self,
        pos: &mut Option<String>,
        loaded: &mut Option<impl FnOnce()>,
        shutdown: &mut ShutdownWatch,
    ) -> (redis::RedisResult<()>, bool) {
        let block_ms = BLOCK.as_millis() as usize;
        let mut con = match self
            .link
            .dedicated(BLOCK + self.link.command_timeout())
            .await
        {
            Ok(c) => c,
            Err(e) => return (Err(e), false),
        };
        let mut call = CATCH_UP.prepare_invoke();
        call.key(&self.stream)
            .key(&self.snapshot)
            .key(&self.trim_mark)
            .arg(pos.as_deref().unwrap_or(""));
        let reply: Value = match call.invoke_async(&mut con).await {
            Ok(v) => v,
            Err(e) => return (Err(e), false),
        };
        match self.catch_up(reply) {
            Some(CatchUp::At(id)) => *pos = Some(id),
            Some(CatchUp::Full) => match self.load_all(&mut con).await {
                Ok(id) => *pos = Some(id),
                Err(e) => return (Err(e), false),
            },
            None => {
                let e =
                    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected catch-up reply"));
                return (Err(e), false);
            }
        }
        self.link.refresh_commands().await;
        self.ready.store(true, Ordering::Relaxed);
        self.link.up();
        if let Some(f) = loaded.take() {
            f();
        }
        let opts = StreamReadOptions::default().block(block_ms).count(BATCH);
        loop {
            let from = [pos.clone().unwrap_or_else(|| "0-0".into())];
            let keys = [&self.stream];
            let read = con.xread_options::<_, _, Option<StreamReadReply>>(&keys, &from, &opts);
            let reply = tokio::select! {
                _ = shutdown.changed() => return (Ok(()), true),
                r = read => r,
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return (Err(e), true),
            };
            let mut records = Vec::new();
            let mut last = None;
            for key in reply.into_iter().flat_map(|r| r.keys) {
                for entry in key.ids {
                    if let Some(rec) = entry
                        .get::<String>("r")
                        .and_then(|s| serde_json::from_str::<Record>(&s).ok())
                    {
                        records.push(rec);
                    } else {
                        log::warn!("revocation stream: entry {} unreadable, skipped", entry.id);
                    }
                    last = Some(entry.id);
                }
            }
            if let Some(id) = last {
                self.apply_batch(&records, &id);
                *pos = Some(id);
            }
        }
    }

    /// Applies a catch-up reply: the id it leaves off at, or that the whole list must be loaded;
    /// `None` for a reply of another shape.
    fn catch_up(&self, reply: Value) -> Option<CatchUp> {
        let Value::Array(parts) = reply else {
            return None;
        };
        let mut parts = parts.into_iter();
        let kind = text(parts.next()?)?;
        if kind == "full" {
            return Some(CatchUp::Full);
        }
        let mut id = text(parts.next()?)?;
        let Value::Array(body) = parts.next()? else {
            return None;
        };
        if matches!(parts.next(), Some(Value::Int(1))) {
            // Keeping what this instance holds errs on the revoked side; an instance started
            // from now on loads only what Redis still has.
            log::warn!(
                "redis: the revocation stream no longer holds the last change applied here \
                 (Redis restarted without persistence?); keeping the revocations held here"
            );
        }
        let mut records = Vec::new();
        for entry in body {
            let Value::Array(pair) = entry else { continue };
            let mut pair = pair.into_iter();
            let Some(entry_id) = pair.next().and_then(text) else {
                continue;
            };
            if let Some(Value::Array(fields)) = pair.next() {
                let mut fields = fields.into_iter();
                while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                    if text(k).as_deref() == Some("r") {
                        match text(v).and_then(|s| serde_json::from_str::<Record>(&s).ok()) {
                            Some(rec) => records.push(rec),
                            None => log::warn!("revocation stream: entry {entry_id} unreadable"),
                        }
                    }
                }
            }
            id = entry_id;
        }
        self.apply_batch(&records, &id);
        Some(CatchUp::At(id))
    }

    /// Loads the whole list: notes the newest stream id, then reads the snapshot with `HSCAN`
    /// in pieces, each far below the command timeout and none holding Redis for long (a million
    /// entries in one reply took longer than any timeout and blocked Redis meanwhile). Changes
    /// written during the scan come after the noted id, so the follower replays them from the
    /// stream in order; a change is applied twice at most, and applying one again is harmless.
    /// Expired entries are dropped from the snapshot, each only if it is still the value read.
    async fn load_all(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(con)
            .await?;
        let id = newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id);
        let now = unix_now();
        let mut records = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(&self.snapshot)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(con)
                .await?;
            let mut expired = Vec::new();
            for pair in flat.chunks_exact(2) {
                let (field, value) = (&pair[0], &pair[1]);
                if snapshot_expired(value, now) {
                    expired.push(field.clone());
                    expired.push(value.clone());
                    continue;
                }
                match from_snapshot(field, value) {
                    Some(rec) => records.push(rec),
                    None => log::warn!("revocation snapshot: an unreadable entry, skipped"),
                }
            }
            if !expired.is_empty() {
                let mut call = DROP_EXPIRED.prepare_invoke();
                call.key(&self.snapshot);
                for v in &expired {
                    call.arg(v);
                }
                let _: redis::RedisResult<i64> = call.invoke_async(con).await;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let _in_order = self.apply_lock.lock();
        replace_all(&self.list, &records);
        drop(_in_order);
        let (jti, subject) = self.list.counts();
        log::info!("revocations loaded from redis: {jti} jti, {subject} subject cut-offs");
        self.publish(&id);
        Ok(id)
    }

    fn apply_batch(&self, records: &[Record], id: &str) {
        if !records.is_empty() {
            let _in_order = self.apply_lock.lock();
            apply_in_one_step(&self.list, records);
        }
        self.publish(id);
    }

    fn publish(&self, id: &str) {
        if let Some(p) = StreamPos::parse(id) {
            self.applied.send_if_modified(|cur| {
                let newer = p > *cur;
                if newer {
                    *cur = p;
                }
                newer
            });
        }
        crate::revocation::service::publish_counts(&self.list);
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The snapshot field and value of a change: `(op, field, before, expires)`.
fn snapshot_entry(record: &Record) -> (&'static str, String, String, String) {
    let field = |kind: &str, iss: &str, id: &str| {
        serde_json::to_string(&[kind, iss, id]).unwrap_or_default()
    };
    let expires = |e: &Option<i64>| e.map(|e| e.to_string()).unwrap_or_default();
    match record {
        Record::RevokeJti {
            iss,
            jti,
            expires_at,
        } => (
            "revoke",
            field("jti", iss, jti),
            "0".into(),
            expires(expires_at),
        ),
        Record::RevokeSubject {
            iss,
            sub,
            before,
            expires_at,
        } => (
            "revoke",
            field("sub", iss, sub),
            before.to_string(),
            expires(expires_at),
        ),
        Record::DeleteJti { iss, jti } => (
            "delete",
            field("jti", iss, jti),
            String::new(),
            String::new(),
        ),
        Record::DeleteSubject { iss, sub } => (
            "delete",
            field("sub", iss, sub),
            String::new(),
            String::new(),
        ),
    }
}

/// The revocation a snapshot entry stands for.
fn from_snapshot(field: &str, value: &str) -> Option<Record> {
    let [kind, iss, id]: [String; 3] = serde_json::from_str(field).ok()?;
    let (before, expires) = value.split_once(':')?;
    let expires_at = match expires {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    match kind.as_str() {
        "jti" => Some(Record::RevokeJti {
            iss,
            jti: id,
            expires_at,
        }),
        "sub" => Some(Record::RevokeSubject {
            iss,
            sub: id,
            before: before.parse().ok()?,
            expires_at,
        }),
        _ => None,
    }
}

/// Makes `list` hold exactly `records` (a full snapshot). Entries that stay are merged in place,
/// never removed first, so nothing in force in both is unrevoked for an instant.
fn replace_all(list: &RevocationList, records: &[Record]) {
    let mut jtis = HashSet::new();
    let mut subjects = HashSet::new();
    for rec in records {
        match rec {
            Record::RevokeJti { iss, jti, .. } => {
                jtis.insert((iss.as_str(), jti.as_str()));
            }
            Record::RevokeSubject { iss, sub, .. } => {
                subjects.insert((iss.as_str(), sub.as_str()));
            }
            _ => {}
        }
    }
    for (iss, jti, _) in list.jti_entries() {
        if !jtis.contains(&(iss.as_str(), jti.as_str())) {
            list.remove_jti(&iss, &jti);
        }
    }
    for (iss, sub, _, _) in list.subject_entries() {
        if !subjects.contains(&(iss.as_str(), sub.as_str())) {
            list.remove_subject(&iss, &sub);
        }
    }
    for rec in records {
        apply(list, rec);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::revocation::store::tests::{jti, subject};

    #[test]
    fn snapshot_entries_read_back_as_their_revocation() {
        for rec in [
            jti("I", "a:b", Some(5)),
            jti("I|x", "j", None),
            subject("I", "s", 100, Some(200)),
            subject("I", "s", -3, None),
        ] {
            let (op, field, before, expires) = snapshot_entry(&rec);
            assert_eq!(op, "revoke");
            assert_eq!(
                from_snapshot(&field, &format!("{before}:{expires}")),
                Some(rec)
            );
        }
    }

    #[test]
    fn stream_ids_order_numerically() {
        assert!(StreamPos::parse("10-0") > StreamPos::parse("9-5"));
        assert!(StreamPos::parse("10-10") > StreamPos::parse("10-9"));
        assert_eq!(StreamPos::parse("x"), None);
    }

    #[test]
    fn a_full_load_replaces_the_list() {
        let list = RevocationList::new();
        list.revoke_jti("I", "gone", None);
        list.revoke_jti("I", "kept", Some(10));
        replace_all(
            &list,
            &[jti("I", "kept", Some(20)), subject("I", "s", 5, None)],
        );
        assert_eq!(
            list.jti_entries(),
            vec![("I".into(), "kept".into(), Some(20))]
        );
        assert_eq!(list.counts(), (1, 1));
    }
}
