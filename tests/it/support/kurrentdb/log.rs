//! The log a KurrentDB test writes to and checks against: the in-repo test server, or a real
//! KurrentDB / EventStoreDB at `KURRENTDB_URL` (the opt-in suite), so that one case runs on
//! either. A real server's `$all` also holds system events and other tests' events, so there a
//! test writes only to streams of its own (a fresh prefix), reads them through a filter on that
//! prefix, and measures positions by what its appends returned, never by the head of `$all`.
//! The journal of those appends is what the cases compare the gateway's results with.
//! Used by `kurrentdb_source.rs` beside the test server.

use std::sync::Mutex;

use futures::StreamExt;
use kurrentdb::{AppendToStreamOptions, Client, EventData, ReadAllOptions, StreamPosition};
use projector_gateway::{config::FilterConfig, demo::BookingsGenerator, sources::sqlite::NewEvent};

use super::kurrentdb::TestKurrentDb;
use crate::support::bookings_model::ReadModel;

/// Streams a real server's log is filled with at the same time.
const APPENDS_IN_FLIGHT: usize = 32;

/// The real server of the opt-in suite, e.g. `esdb://127.0.0.1:2113?tls=false`, if
/// `KURRENTDB_URL` is set.
pub fn real_url() -> Option<String> {
    std::env::var("KURRENTDB_URL").ok().filter(|u| !u.trim().is_empty())
}

/// One event as the test appended it.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The `$all` commit position the append returned.
    pub position: u64,
    pub stream: String,
    pub id: String,
    pub event_type: String,
    pub is_json: bool,
    pub data: Vec<u8>,
}

enum Writer {
    /// Appends in-process, as another writer of the test server would.
    Double(TestKurrentDb),
    /// Appends with the official client, one event per append as `fill` always did, so each
    /// event's commit position is the one its append returns.
    Real(Box<Client>),
}

pub struct TestLog {
    /// The connection string the gateway is given.
    pub url: String,
    /// Prefix of every stream the test writes: empty on the test server, whose log holds the
    /// test's events alone; `t<uuid>-` on a real server.
    pub prefix: String,
    /// Where the test's events begin: 0 on the test server; on a real server the position of
    /// the last event of `$all` when the test began, as the server reported it.
    pub start: u64,
    writer: Writer,
    journal: Mutex<Vec<Appended>>,
}

impl TestLog {
    /// The test server's log (which it owns and stops when dropped).
    pub fn double(server: TestKurrentDb) -> Self {
        Self { url: server.connection_string(), prefix: String::new(), start: 0, writer: Writer::Double(server), journal: Mutex::default() }
    }

    /// A real server's log, with a fresh stream prefix for this test.
    pub async fn real(url: &str) -> Self {
        // Two rustls crypto providers are linked (ARCHITECTURE.md); a `tls=true` URL needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = connect(url);
        let options = ReadAllOptions::default().position(StreamPosition::End).backwards().max_count(1);
        let mut read = client.read_all(&options).await.unwrap_or_else(|e| panic!("KURRENTDB_URL {url}: cannot read `$all`: {e}"));
        let last = read.next().await.unwrap_or_else(|e| panic!("KURRENTDB_URL {url}: cannot read `$all`: {e}"));
        let start = last.map_or(0, |e| e.get_original_event().position.commit);
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self { url: url.to_owned(), prefix, start, writer: Writer::Real(Box::new(client)), journal: Mutex::default() }
    }

    pub fn is_real(&self) -> bool {
        matches!(self.writer, Writer::Real(_))
    }

    /// The test server, for what only it can do (drop subscriptions, count them).
    pub fn server(&self) -> &TestKurrentDb {
        match &self.writer {
            Writer::Double(server) => server,
            Writer::Real(_) => panic!("a real server cannot be controlled by the test"),
        }
    }

    /// Subscriptions opened so far: known on the test server only.
    pub fn subscriptions(&self) -> Option<u64> {
        match &self.writer {
            Writer::Double(server) => Some(server.subscriptions()),
            Writer::Real(_) => None,
        }
    }

    /// A client of the server, for reading back what the gateway wrote to it.
    pub fn client(&self) -> Client {
        connect(&self.url)
    }

    /// The name of one of the test's own streams.
    pub fn stream(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The connector filter that takes the test's streams starting with `name` (all of them
    /// when empty): none on the test server when `name` is empty.
    pub fn filter(&self, name: &str) -> FilterConfig {
        let prefix = self.stream(name);
        if prefix.is_empty() { FilterConfig::default() } else { FilterConfig { include_stream_prefixes: vec![prefix], ..FilterConfig::default() } }
    }

    /// [`Self::filter`] as the value of a connector's `filter:` key ("" for none).
    pub fn filter_yaml(&self, name: &str) -> String {
        let prefix = self.stream(name);
        if prefix.is_empty() { String::new() } else { format!("{{ include_stream_prefixes: [\"{prefix}\"] }}") }
    }

    /// Appends one event to `stream` (a full name: see [`Self::stream`]); returns its position.
    pub async fn append(&self, stream: &str, event_type: &str, is_json: bool, data: Vec<u8>) -> u64 {
        let id = uuid::Uuid::new_v4();
        let position = match &self.writer {
            Writer::Double(server) => server.append_event(stream, &id.to_string(), event_type, is_json, data.clone()),
            Writer::Real(client) => {
                let event = if is_json {
                    let value: serde_json::Value = serde_json::from_slice(&data).expect("JSON data");
                    EventData::json(event_type, &value).expect("JSON event")
                } else {
                    EventData::binary(event_type, data.clone().into())
                };
                let written = client
                    .append_to_stream(stream, &AppendToStreamOptions::default(), event.id(id))
                    .await
                    .unwrap_or_else(|e| panic!("append to {stream} on {}: {e}", self.url));
                written.position.commit
            }
        };
        let appended = Appended { position, stream: stream.to_owned(), id: id.to_string(), event_type: event_type.to_owned(), is_json, data };
        self.journal.lock().unwrap().push(appended);
        position
    }

    pub async fn append_json(&self, stream: &str, event_type: &str, data: serde_json::Value) -> u64 {
        self.append(stream, event_type, true, serde_json::to_vec(&data).unwrap()).await
    }

    /// Appends `count` generated bookings events over `streams` bookings, one append each. On
    /// a real server a round trip of the client costs tens of milliseconds, so the streams are
    /// written side by side (each in its order) and the journal is then put in `$all` order;
    /// the bookings read model does not depend on the order across streams.
    pub async fn fill(&self, count: usize, streams: usize, seed: u64) {
        let events = BookingsGenerator::new(seed, streams).take(count);
        if !self.is_real() {
            for event in events {
                self.append(&self.stream(&event.stream), &event.event_type, true, event.data.into_bytes()).await;
            }
            return;
        }
        let mut by_stream: Vec<(String, Vec<NewEvent>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for event in events {
            let slot = *index.entry(event.stream.clone()).or_insert_with(|| {
                by_stream.push((self.stream(&event.stream), Vec::new()));
                by_stream.len() - 1
            });
            by_stream[slot].1.push(event);
        }
        futures::stream::iter(by_stream)
            .for_each_concurrent(APPENDS_IN_FLIGHT, |(stream, events)| async move {
                for event in events {
                    self.append(&stream, &event.event_type, true, event.data.into_bytes()).await;
                }
            })
            .await;
        self.journal.lock().unwrap().sort_by_key(|e| e.position);
    }

    /// What the test appended, in order.
    pub fn appended(&self) -> Vec<Appended> {
        self.journal.lock().unwrap().clone()
    }

    /// The position of the test's `index`th event.
    pub fn position(&self, index: usize) -> u64 {
        self.journal.lock().unwrap()[index].position
    }

    /// The position of the test's last event (0 before any).
    pub fn last(&self) -> u64 {
        self.journal.lock().unwrap().last().map_or(0, |e| e.position)
    }

    /// The read model the reducer must build from the test's events.
    pub fn reference(&self) -> ReadModel {
        let mut model = ReadModel::default();
        for e in self.journal.lock().unwrap().iter().filter(|e| e.is_json) {
            model.apply(e.position as i64, &e.event_type, &serde_json::from_slice(&e.data).unwrap());
        }
        model
    }
}

fn connect(url: &str) -> Client {
    let settings = url.parse().unwrap_or_else(|e: kurrentdb::ClientSettingsParseError| panic!("connection string {url}: {}", e.message()));
    Client::new(settings).expect("KurrentDB client")
}
