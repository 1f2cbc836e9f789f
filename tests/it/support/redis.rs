//! The Redis server of the tests (started once per test process by `scripts/redis.sh`), a key
//! prefix of its own per test (parallel tests share the server and its database 0), a private
//! server for the tests that kill one, and reading the bookings read model and the gateway's
//! keys back.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::OnceLock,
};

use redis::aio::MultiplexedConnection;

use super::{
    bookings_model::{Booking, GuestStats, ReadModel},
    processes::{free_port, repo_root},
};

#[path = "redis_bookings.rs"]
pub mod bookings;

/// Runs `scripts/redis.sh <command>` with `env`; the last line of its stdout.
fn script(command: &str, env: &[(&str, String)]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/redis.sh"))
        .arg(command)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/redis.sh");
    assert!(out.status.success(), "scripts/redis.sh {command} failed");
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap_or_default().trim().to_string()
}

/// The shared server's URL, starting it (and installing it) on first use.
pub fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| script("start", &[]))
}

/// A test's own corner of a server: every key it writes starts with `prefix`.
pub struct RedisKeys {
    pub url: String,
    pub prefix: String,
}

impl RedisKeys {
    /// A fresh prefix on the shared server.
    pub fn fresh(hint: &str) -> Self {
        Self::on(url(), hint)
    }

    /// A fresh prefix on the server at `url`.
    pub fn on(url: &str, hint: &str) -> Self {
        Self { url: url.to_string(), prefix: format!("t:{hint}:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]) }
    }

    /// The sink section, `extra` lines appended (8 spaces of indent).
    pub fn sink_yaml(&self, extra: &str) -> String {
        format!("      redis:\n        url: \"{}\"\n        key_prefix: \"{}\"\n{extra}", self.url, self.prefix)
    }

    pub fn sink_config(&self) -> projector_gateway::sinks::settings::redis::RedisSinkConfig {
        projector_gateway::sinks::settings::redis::RedisSinkConfig {
            url: self.url.clone(),
            key_prefix: self.prefix.clone(),
            writers: 1,
            response_timeout_ms: 30_000,
        }
    }

    pub async fn connection(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).expect("client");
        client.get_multiplexed_async_connection().await.expect("connect to the test Redis")
    }

    /// Runs one command on an unprefixed key list (`args` are passed as they are).
    pub async fn query<T: redis::FromRedisValue>(&self, command: &str, args: &[&str]) -> T {
        let mut conn = self.connection().await;
        let mut cmd = redis::cmd(command);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("{command} {args:?}: {e}"))
    }

    /// The key `key` of the read model, as stored.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Every key the test wrote, without the prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.connection().await;
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(batch.into_iter().map(|k| k[self.prefix.len()..].to_string()));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys
    }

    /// The connector's checkpoints: (partition count, partition) -> position.
    pub async fn checkpoints(&self, connector: &str) -> BTreeMap<(u32, u32), u64> {
        let fields: BTreeMap<String, String> = self.query("HGETALL", &[&self.key(&format!("checkpoints:{connector}"))]).await;
        fields
            .into_iter()
            .map(|(f, v)| {
                let (count, partition) = f.split_once(':').expect("`<count>:<partition>`");
                ((count.parse().unwrap(), partition.parse().unwrap()), v.parse().unwrap())
            })
            .collect()
    }

    /// The lowest stored position of the connector under `partitions` (0 if one is missing).
    pub async fn low_watermark(&self, connector: &str, partitions: u32) -> u64 {
        let rows = self.checkpoints(connector).await;
        let positions: Vec<u64> = rows.iter().filter(|((count, _), _)| *count == partitions).map(|(_, p)| *p).collect();
        if positions.len() < partitions as usize { 0 } else { positions.into_iter().min().unwrap_or(0) }
    }

    /// The entries of a stream, each as its fields.
    pub async fn stream(&self, key: &str) -> Vec<BTreeMap<String, String>> {
        let entries: Vec<(String, Vec<(String, String)>)> = self.query("XRANGE", &[&self.key(key), "-", "+"]).await;
        entries.into_iter().map(|(_, fields)| fields.into_iter().collect()).collect()
    }

    /// The bookings read model of [`bookings`] as the server holds it.
    pub async fn read_model(&self) -> ReadModel {
        let mut model = ReadModel::default();
        for key in self.keys().await {
            if let Some(id) = key.strip_prefix("booking:") {
                let h: BTreeMap<String, String> = self.query("HGETALL", &[&self.key(&key)]).await;
                let text = |f: &str| h.get(f).cloned().unwrap_or_default();
                let int = |f: &str| h.get(f).map_or(0, |v| v.parse::<i64>().unwrap_or_else(|_| panic!("{key}.{f} = {v:?}")));
                model.bookings.insert(id.to_string(), Booking {
                    guest_id: text("guest_id"),
                    room_id: text("room_id"),
                    check_in: text("check_in"),
                    check_out: text("check_out"),
                    price_cents: int("price_cents"),
                    paid_cents: int("paid_cents"),
                    status: text("status"),
                    last_position: int("last_position"),
                });
            } else if let Some(id) = key.strip_prefix("guest:") {
                let h: BTreeMap<String, i64> = self.query("HGETALL", &[&self.key(&key)]).await;
                let int = |f: &str| h.get(f).copied().unwrap_or(0);
                model.guests.insert(id.to_string(), GuestStats {
                    bookings: int("bookings"),
                    cancellations: int("cancellations"),
                    payments: int("payments"),
                    paid_cents: int("paid_cents"),
                });
            }
        }
        model
    }

    /// Every `history:<booking>` stream: the booking, then its entries' (type, position).
    pub async fn histories(&self) -> BTreeMap<String, Vec<(String, i64)>> {
        let mut histories = BTreeMap::new();
        for key in self.keys().await {
            if let Some(id) = key.strip_prefix("history:") {
                let entries = self.stream(&key).await;
                histories.insert(id.to_string(), entries.iter().map(|e| (e["type"].clone(), e["position"].parse().unwrap())).collect());
            }
        }
        histories
    }
}

/// The histories the log calls for: per booking, its handled events' (type, position) in log
/// order.
pub fn histories_from_log(log: &std::path::Path) -> BTreeMap<String, Vec<(String, i64)>> {
    let conn = rusqlite::Connection::open(log).expect("log");
    let mut stmt = conn.prepare("SELECT position, stream, event_type FROM events ORDER BY position").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).unwrap();
    let mut histories: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for row in rows {
        let (position, stream, event_type) = row.unwrap();
        if bookings::HANDLED.contains(&event_type.as_str()) {
            histories.entry(stream).or_default().push((event_type, position));
        }
    }
    histories
}

/// A Redis server of one test's own (another port and folder), for the tests that kill it;
/// stopped when dropped.
pub struct PrivateServer {
    pub url: String,
    env: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

impl PrivateServer {
    pub fn start() -> Self {
        url(); // installs Redis if needed, once
        let dir = tempfile::tempdir().expect("temp dir");
        let env = vec![("REDIS_PORT", free_port().to_string()), ("REDIS_BASE_DIR", dir.path().display().to_string())];
        let url = script("start", &env);
        Self { url, env, _dir: dir }
    }

    /// SIGKILL, as a crash would: what the append-only file holds survives.
    pub fn kill(&self) {
        script("kill", &self.env);
    }

    /// Starts it again on the same port and data (it replays its append-only file).
    pub fn restart(&self) {
        script("start", &self.env);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/redis.sh"))
            .arg("kill")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::null())
            .status();
    }
}
