//! The Redis store (feature `redis`): state kept in a Redis server the nodes share, for
//! deployments that already run one or want state outside the nodes' disks.
//!
//! Layout, under a namespace (default `actix-cluster`): each key is a hash
//! `{ns}:k:<key>` with fields `v` (version), `f` (fencing token) and `d` (the value, absent in
//! a tombstone), and the sorted set `{ns}:index` holds the keys with a value, for listing by
//! prefix without scanning the server. The braces make both one Redis Cluster hash slot, so
//! that a write (a Lua script touching both) runs atomically there too.
//!
//! Every conditional write is one script, so the check and the write cannot interleave with
//! another client's. Tokens are compared as decimal strings (exact for every `u64`); versions
//! are Lua numbers, exact up to 2^53 writes of one key.

use redis::aio::ConnectionManager;

use super::{
    DEFAULT_MAX_VALUE_LEN, Expect, StateError, StateStore, StoreFuture, Stored, Version, check_key,
    check_write,
};

const WRITE: &str = r"
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local rec = redis.call('HMGET', KEYS[1], 'v', 'f', 'd')
local version = tonumber(rec[1] or '0')
local held = rec[2] or '0'
local live = rec[3] ~= false
if lt(ARGV[5], held) then return {'fenced', held} end
local ok
if ARGV[3] == 'any' then ok = true
elseif ARGV[3] == 'absent' then ok = not live
else ok = live and string.format('%.0f', version) == ARGV[4] end
if not ok then
  if live then return {'conflict', string.format('%.0f', version)} end
  return {'conflict', ''}
end
version = version + 1
local v = string.format('%.0f', version)
if ARGV[1] == 'put' then
  redis.call('HSET', KEYS[1], 'v', v, 'f', ARGV[5], 'd', ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[6])
else
  redis.call('HSET', KEYS[1], 'v', v, 'f', ARGV[5])
  redis.call('HDEL', KEYS[1], 'd')
  redis.call('ZREM', KEYS[2], ARGV[6])
end
return {'ok', v}
";

/// A [`StateStore`] in a Redis server. Cheap to clone: clones share one multiplexed
/// connection, which reconnects by itself after a failure.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    namespace: String,
    script: std::sync::Arc<redis::Script>,
    max_value_len: usize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StateError {
    StateError::Unavailable(format!("redis: {e}"))
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://host:port/db`) under the namespace
    /// `actix-cluster`. Fails if the server cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(|e| {
            StateError::Unavailable(format!("redis: the address {url:?} is not valid: {e}"))
        })?;
        let conn = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(Self {
            conn,
            namespace: "actix-cluster".into(),
            script: std::sync::Arc::new(redis::Script::new(WRITE)),
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        })
    }

    /// Keeps this store's keys under `namespace` (several clusters can share a server).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the largest value accepted, in bytes.
    pub fn max_value_len(mut self, limit: usize) -> Self {
        self.max_value_len = limit;
        self
    }

    fn record_key(&self, key: &str) -> String {
        format!("{{{}}}:k:{key}", self.namespace)
    }

    fn index_key(&self) -> String {
        format!("{{{}}}:index", self.namespace)
    }

    fn write(
        &self,
        key: &str,
        data: Option<Vec<u8>>,
        expect: Expect,
        fence: u64,
    ) -> StoreFuture<u64> {
        let check = check_write(key, data.as_deref(), self.max_value_len);
        let mut conn = self.conn.clone();
        let script = std::sync::Arc::clone(&self.script);
        let (record, index, key) = (self.record_key(key), self.index_key(), key.to_owned());
        Box::pin(async move {
            let r = async {
                check?;
                let (kind, version) = match expect {
                    Expect::Any => ("any", String::new()),
                    Expect::Absent => ("absent", String::new()),
                    Expect::Version(v) => ("version", v.to_string()),
                };
                let op = if data.is_some() { "put" } else { "del" };
                let answer: Vec<String> = script
                    .key(record)
                    .key(index)
                    .arg(op)
                    .arg(data.unwrap_or_default())
                    .arg(kind)
                    .arg(version)
                    .arg(fence.to_string())
                    .arg(&key)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let number = |s: &str| {
                    s.parse::<u64>()
                        .map_err(|_| StateError::Corrupt(format!("key {key:?}: bad number {s:?}")))
                };
                match answer.as_slice() {
                    [tag, v] if tag == "ok" => number(v),
                    [tag, held] if tag == "fenced" => Err(StateError::Fenced {
                        key: key.clone(),
                        fence,
                        current: number(held)?,
                    }),
                    [tag, v] if tag == "conflict" => Err(StateError::Conflict {
                        key: key.clone(),
                        expected: expect,
                        actual: Version(if v.is_empty() { None } else { Some(number(v)?) }),
                    }),
                    other => Err(StateError::Corrupt(format!(
                        "key {key:?}: unexpected script answer {other:?}"
                    ))),
                }
            }
            .await;
            super::count("redis", &r);
            r
        })
    }
}

impl StateStore for RedisStore {
    fn get(&self, key: &str) -> StoreFuture<Option<Stored>> {
        let check = check_key(key);
        let mut conn = self.conn.clone();
        let (record, key) = (self.record_key(key), key.to_owned());
        Box::pin(async move {
            check?;
            let (v, f, d): (Option<String>, Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
                .arg(&record)
                .arg("v")
                .arg("f")
                .arg("d")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(data) = d else { return Ok(None) };
            let number = |s: Option<String>| {
                s.as_deref()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| StateError::Corrupt(format!("key {key:?}: bad header")))
            };
            Ok(Some(Stored {
                data,
                version: number(v)?,
                fence: number(f)?,
            }))
        })
    }

    fn put(&self, key: &str, data: Vec<u8>, expect: Expect, fence: u64) -> StoreFuture<u64> {
        self.write(key, Some(data), expect, fence)
    }

    fn delete(&self, key: &str, expect: Expect, fence: u64) -> StoreFuture<()> {
        let w = self.write(key, None, expect, fence);
        Box::pin(async move { w.await.map(|_| ()) })
    }

    fn list(&self, prefix: &str) -> StoreFuture<Vec<String>> {
        let mut conn = self.conn.clone();
        let index = self.index_key();
        // Keys are UTF-8, which never holds the byte 0xff: every key with the prefix sorts
        // below the prefix followed by it.
        let (min, max) = if prefix.is_empty() {
            (b"-".to_vec(), b"+".to_vec())
        } else {
            let mut min = b"[".to_vec();
            min.extend_from_slice(prefix.as_bytes());
            let mut max = min.clone();
            max.push(0xff);
            (min, max)
        };
        Box::pin(async move {
            redis::cmd("ZRANGEBYLEX")
                .arg(&index)
                .arg(min)
                .arg(max)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)
        })
    }
}
