//! The real PostgreSQL server of the tests (started once per test binary by
//! `scripts/postgres.sh`), a fresh database per test, an Eventuous-schema event log in it, and
//! reading the bookings read model back from a PostgreSQL target.

use std::{process::Command, sync::OnceLock};

use projector_gateway::{demo::BookingsGenerator, sources::sqlite::NewEvent};
use tokio_postgres::{Client, NoTls};

use super::{bookings_model::ReadModel, processes::repo_root};

/// The server's admin URL (database `gateway`).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/postgres.sh"))
            .arg("start")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/postgres.sh");
        assert!(out.status.success(), "scripts/postgres.sh start failed");
        let url = String::from_utf8(out.stdout).unwrap().lines().last().expect("URL").trim().to_string();
        drop_databases_of_finished_runs(&url);
        url
    })
}

/// Test databases are named `t_<pid>_...`; those of a process that has ended are dropped when the
/// next test binary starts, so a server that lives across runs (on a developer's machine, or a
/// CI machine that runs every stop) does not fill the disk it shares with the build.
fn drop_databases_of_finished_runs(url: &str) {
    let list = Command::new("psql")
        .args([url, "-Atc", "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'"])
        .output();
    let Ok(list) = list else { return };
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            // Best effort: a database still in use stays for the next sweep.
            let _ = Command::new("psql").args([url, "-qAtc", &format!("DROP DATABASE IF EXISTS \"{name}\"")]).output();
        }
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, named after the test process so that the next test
/// binary drops it once this one has ended (`drop_databases_of_finished_runs`).
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn fresh(hint: &str) -> Self {
        let admin = connect(server_url()).await;
        let name = format!("t_{}_{}_{}", std::process::id(), hint, uuid::Uuid::new_v4().simple()).to_lowercase();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let base = server_url().rsplit_once('/').expect("URL with a database").0;
        Self { url: format!("{base}/{name}"), name }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

/// Eventuous's PostgreSQL event store schema (`Eventuous.Postgresql`'s `CreateSchema.sql`,
/// tables only).
pub const EVENTUOUS_SCHEMA: &str = r#"
create schema if not exists eventuous;
create table if not exists eventuous.streams (
    stream_name varchar(1000) not null,
    stream_id   integer primary key generated always as identity,
    version     integer not null default(-1),
    constraint uq_streams_name unique (stream_name),
    constraint ck_version_gte_negative_one check (version >= -1)
);
create table if not exists eventuous.messages (
    message_id      uuid,
    message_type    varchar not null,
    stream_id       integer not null,
    stream_position integer not null,
    global_position bigint primary key generated always as identity,
    json_data       jsonb not null,
    json_metadata   jsonb,
    created         timestamp not null,
    constraint fk_messages_stream foreign key (stream_id) references eventuous.streams (stream_id),
    constraint uq_messages_stream_id_and_stream_position unique (stream_id, stream_position),
    constraint uq_stream_id_and_message_id unique (stream_id, message_id),
    constraint ck_stream_position_gte_zero check (stream_position >= 0)
);
create index if not exists events_stream_idx on eventuous.messages (stream_id);
"#;

/// Appends one event the way Eventuous's `append_events` does (stream row, next stream
/// position, global position from the identity), in the caller's transaction if any. Returns
/// the global position.
const APPEND: &str = r#"
WITH s AS (
    INSERT INTO eventuous.streams (stream_name, version) VALUES ($1, 0)
    ON CONFLICT (stream_name) DO UPDATE SET version = eventuous.streams.version + 1
    RETURNING stream_id, version)
INSERT INTO eventuous.messages (message_id, message_type, stream_id, stream_position, json_data, json_metadata, created)
SELECT $2::text::uuid, $3, s.stream_id, s.version, $4::text::jsonb, $5::text::jsonb, now() AT TIME ZONE 'utc' FROM s
RETURNING global_position"#;

/// An Eventuous event log in a database.
pub struct EventuousLog {
    pub client: Client,
    /// Every event appended through this handle, with its global position.
    pub appended: Vec<(i64, NewEvent)>,
}

impl EventuousLog {
    pub async fn create(db: &Database) -> Self {
        let client = db.client().await;
        client.batch_execute(EVENTUOUS_SCHEMA).await.expect("create the Eventuous schema");
        Self { client, appended: Vec::new() }
    }

    /// Appends generated bookings events, in one transaction per chunk.
    pub async fn append_generated(&mut self, count: usize, streams: usize, seed: u64) {
        let mut generator = BookingsGenerator::new(seed, streams);
        let mut left = count;
        while left > 0 {
            let chunk = generator.take(left.min(2_000));
            left -= chunk.len();
            self.client.batch_execute("BEGIN").await.unwrap();
            for event in chunk {
                let position = append(&self.client, &event).await;
                self.appended.push((position, event));
            }
            self.client.batch_execute("COMMIT").await.unwrap();
        }
    }

    pub fn head(&self) -> u64 {
        self.appended.iter().map(|(p, _)| *p as u64).max().unwrap_or(0)
    }

    /// The reference read model of everything appended.
    pub fn reference(&self) -> ReadModel {
        let mut appended: Vec<_> = self.appended.iter().collect();
        appended.sort_by_key(|(p, _)| *p);
        let mut model = ReadModel::default();
        for (position, event) in appended {
            model.apply(*position, &event.event_type, &serde_json::from_str(&event.data).unwrap());
        }
        model
    }
}

/// Appends `event` on `client` (inside whatever transaction it has open).
pub async fn append(client: &Client, event: &NewEvent) -> i64 {
    let id = event.event_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    client
        .query_one(APPEND, &[&event.stream, &id, &event.event_type, &event.data, &event.metadata])
        .await
        .expect("append")
        .get(0)
}

/// The bookings read model held by a PostgreSQL target.
pub async fn read_model(client: &Client) -> ReadModel {
    let mut model = ReadModel::default();
    let rows = client
        .query(
            "SELECT booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position FROM bookings",
            &[],
        )
        .await
        .expect("bookings");
    for r in rows {
        model.bookings.insert(
            r.get(0),
            super::bookings_model::Booking {
                guest_id: r.get(1),
                room_id: r.get(2),
                check_in: r.get(3),
                check_out: r.get(4),
                price_cents: r.get(5),
                paid_cents: r.get(6),
                status: r.get(7),
                last_position: r.get(8),
            },
        );
    }
    let rows = client
        .query("SELECT guest_id, bookings, cancellations, payments, paid_cents FROM guest_stats", &[])
        .await
        .expect("guest_stats");
    for r in rows {
        model.guests.insert(
            r.get(0),
            super::bookings_model::GuestStats {
                bookings: r.get(1),
                cancellations: r.get(2),
                payments: r.get(3),
                paid_cents: r.get(4),
            },
        );
    }
    model
}

/// Checkpoint rows of a PostgreSQL target: (partition_count, partition, position).
pub async fn checkpoints(client: &Client, connector: &str) -> Vec<(i32, i32, i64)> {
    client
        .query(
            r#"SELECT partition_count, "partition", position FROM public.checkpoints WHERE connector = $1 ORDER BY 1, 2"#,
            &[&connector],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        .unwrap_or_default()
}

/// The sink section for a PostgreSQL target with the bookings schema.
pub fn postgres_sink_yaml(url: &str) -> String {
    format!(
        "      postgres:\n        url: \"{url}\"\n        init_sql_file: \"{}\"\n",
        super::fixtures::schema_file().display()
    )
}

/// The source section for an Eventuous PostgreSQL log.
pub fn postgres_source_yaml(url: &str) -> String {
    format!("      postgres: {{ url: \"{url}\", poll_interval_ms: 5 }}\n")
}
