//! The real search engines of the Elasticsearch target's tests, started once per test binary by
//! `scripts/elastic.sh`: Elasticsearch 8 (its `integ-test-zip` distribution) and OpenSearch 2.
//! Each test gets index names of its own (a unique prefix), and reads documents, checkpoints
//! and the bookings read model back through the same official client the sink uses.

use std::{collections::BTreeMap, process::Command, sync::OnceLock};

use elasticsearch::{Elasticsearch, http::Method};
use projector_gateway::{
    config::{ElasticRefresh, ElasticSinkConfig},
    sinks::elastic::client,
};
use serde_json::Value;

use super::{
    bookings_model::{Booking, GuestStats, ReadModel},
    processes::repo_root,
};

/// An engine `scripts/elastic.sh` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Elasticsearch,
    OpenSearch,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Elasticsearch => "elasticsearch",
            Engine::OpenSearch => "opensearch",
        }
    }

    /// The engine's URL, starting it (and installing it) on first use.
    pub fn url(self) -> &'static str {
        static ELASTICSEARCH: OnceLock<String> = OnceLock::new();
        static OPENSEARCH: OnceLock<String> = OnceLock::new();
        let cell = match self {
            Engine::Elasticsearch => &ELASTICSEARCH,
            Engine::OpenSearch => &OPENSEARCH,
        };
        cell.get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/elastic.sh"))
                .args(["start", self.name()])
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("run scripts/elastic.sh");
            assert!(out.status.success(), "scripts/elastic.sh start {} failed", self.name());
            String::from_utf8(out.stdout).unwrap().lines().last().expect("URL").trim().to_string()
        })
    }

    /// What the sink detects it as.
    pub fn detected(self) -> projector_gateway::sinks::elastic::Engine {
        match self {
            Engine::Elasticsearch => projector_gateway::sinks::elastic::Engine::Elasticsearch,
            Engine::OpenSearch => projector_gateway::sinks::elastic::Engine::OpenSearch,
        }
    }
}

/// Index names of one test: `<prefix>` (the default index), `<prefix>-checkpoints`,
/// `<prefix>-parked`, and whatever else starts with the prefix.
pub struct Indices {
    pub engine: Engine,
    pub prefix: String,
    pub client: Elasticsearch,
}

impl Indices {
    pub fn fresh(engine: Engine, hint: &str) -> Self {
        let prefix = format!("t-{hint}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let config = ElasticSinkConfig { url: engine.url().to_string(), ..Self::bare_config() };
        let (client, _) = client::connect(&config).expect("client");
        Self { engine, prefix, client }
    }

    fn bare_config() -> ElasticSinkConfig {
        ElasticSinkConfig {
            url: String::new(),
            api_key: None,
            index: None,
            checkpoints_index: "checkpoints".into(),
            parked_index: "parked_events".into(),
            refresh: ElasticRefresh::False,
            max_bulk_bytes: 5 << 20,
            request_timeout_ms: 30_000,
            writers: 1,
            producer: None,
        }
    }

    pub fn checkpoints_index(&self) -> String {
        format!("{}-checkpoints", self.prefix)
    }

    pub fn parked_index(&self) -> String {
        format!("{}-parked", self.prefix)
    }

    /// A sink configuration for this test's indices.
    pub fn config(&self) -> ElasticSinkConfig {
        ElasticSinkConfig {
            url: self.engine.url().to_string(),
            index: Some(self.prefix.clone()),
            checkpoints_index: self.checkpoints_index(),
            parked_index: self.parked_index(),
            ..Self::bare_config()
        }
    }

    /// The sink section for this test's indices, `extra` lines appended (8 spaces of indent).
    pub fn sink_yaml(&self, extra: &str) -> String {
        format!(
            "      elastic:\n        url: \"{}\"\n        index: {}\n        checkpoints_index: {}\n        parked_index: {}\n{extra}",
            self.engine.url(),
            self.prefix,
            self.checkpoints_index(),
            self.parked_index()
        )
    }

    /// A request to the engine; panics on failure.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        client::send_json(&self.client, method, path, body.map(|b| b.to_string().into_bytes()))
            .await
            .unwrap_or_else(|e| panic!("{method:?} {path}: {}", e.message))
            .0
    }

    /// The document's `_source`, read in real time (no refresh needed), if it exists.
    pub async fn get(&self, index: &str, id: &str) -> Option<Value> {
        let path = format!("/{index}/_doc/{}", encode(id));
        match client::send_json(&self.client, Method::Get, &path, None).await {
            Ok((doc, _)) => Some(doc["_source"].clone()),
            Err(e) if e.message.starts_with("HTTP 404") => None,
            Err(e) => panic!("GET {path}: {}", e.message),
        }
    }

    /// The stored version of a document.
    pub async fn version(&self, index: &str, id: &str) -> i64 {
        let path = format!("/{index}/_doc/{}", encode(id));
        self.request(Method::Get, &path, None).await["_version"].as_i64().expect("version")
    }

    /// Every document of an index pattern as (id, source), after a refresh, sorted by id (at
    /// most 10,000: tests stay below).
    pub async fn documents(&self, pattern: &str) -> Vec<(String, Value)> {
        // An index the gateway has just created answers searches with 503 "all shards failed"
        // until its primary shard starts: wait for that first (a pattern matching nothing
        // answers at once; a timeout leaves the search below to report what is wrong).
        // A loaded engine has also answered 503 once the health said yellow (a fresh-clone CI
        // run, right after a SIGKILLed gateway's restart): transient answers are polled
        // again until a deadline.
        let health = format!("/_cluster/health/{pattern}?wait_for_status=yellow&timeout=60s");
        let query = serde_json::json!({"size": 10_000, "track_total_hits": true, "query": {"match_all": {}}});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let reply = loop {
            let _ = client::send_json(&self.client, Method::Get, &health, None).await;
            let body = Some(query.to_string().into_bytes());
            let searched = match client::send_json(&self.client, Method::Post, &format!("/{pattern}/_refresh"), None).await {
                Ok(_) => client::send_json(&self.client, Method::Post, &format!("/{pattern}/_search"), body).await,
                Err(e) => Err(e),
            };
            match searched {
                Ok((reply, _)) => break reply,
                Err(e) if e.transient && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("searching {pattern}: {}", e.message),
            }
        };
        let total = reply["hits"]["total"]["value"].as_u64().expect("total");
        assert!(total <= 10_000, "{total} documents in {pattern}: more than a test should write");
        let mut docs: Vec<(String, Value)> = reply["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        docs
    }

    /// The connector's checkpoint documents: (partition count, partition) -> position.
    pub async fn checkpoints(&self, connector: &str) -> BTreeMap<(u64, u64), u64> {
        self.documents(&self.checkpoints_index())
            .await
            .into_iter()
            .filter(|(_, d)| d["connector"] == connector && d["kind"] == "checkpoint")
            .map(|(_, d)| ((d["partition_count"].as_u64().unwrap(), d["partition"].as_u64().unwrap()), d["position"].as_u64().unwrap()))
            .collect()
    }

    /// The bookings read model of `elastic_bookings::reduce_elastic`, from its documents.
    pub async fn read_model(&self) -> ReadModel {
        let docs = self.documents(&self.prefix).await;
        let text = |d: &Value, k: &str| d[k].as_str().unwrap_or_else(|| panic!("{d}: no string `{k}`")).to_string();
        let int = |d: &Value, k: &str| d[k].as_i64().unwrap_or_else(|| panic!("{d}: no integer `{k}`"));
        let mut model = ReadModel::default();
        for (id, d) in docs.iter().filter(|(_, d)| d["kind"] == "booking") {
            model.bookings.insert(
                id.strip_prefix("booking:").expect("booking id").to_string(),
                Booking {
                    guest_id: text(d, "guest_id"),
                    room_id: text(d, "room_id"),
                    check_in: text(d, "check_in"),
                    check_out: text(d, "check_out"),
                    price_cents: int(d, "price_cents"),
                    paid_cents: 0,
                    status: text(d, "status"),
                    last_position: int(d, "last_position"),
                },
            );
        }
        for (_, d) in docs.iter().filter(|(_, d)| d["kind"] != "booking") {
            let guest: &mut GuestStats = model.guests.entry(text(d, "guest_id")).or_default();
            match d["kind"].as_str() {
                Some("booked") => guest.bookings += 1,
                Some("cancellation") => guest.cancellations += 1,
                Some("payment") => {
                    let amount = int(d, "amount_cents");
                    guest.payments += 1;
                    guest.paid_cents += amount;
                    if let Some(b) = model.bookings.get_mut(&text(d, "booking_id")) {
                        b.paid_cents += amount;
                    }
                }
                other => panic!("unexpected document kind {other:?}: {d}"),
            }
        }
        model
    }
}

/// Percent-encodes a document id for a URL path.
pub fn encode(id: &str) -> String {
    projector_gateway::sinks::elastic::client::encode_segment(id)
}

/// One test per (engine, case): `on_both_engines!(case, ...)` in a module that has `Engine` in
/// scope and an `async fn case(engine: Engine)` for each case.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod elasticsearch {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Engine::Elasticsearch).await
                }
            )*
        }
        mod opensearch {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Engine::OpenSearch).await
                }
            )*
        }
    };
}
pub(crate) use on_both_engines;
