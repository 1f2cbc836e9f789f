//! The registry of the connectors a `run` runs, as operators see them: each connector's task
//! tells its handle when it starts, runs, stands by, stops or fails, and hands it its progress
//! channel; the head probe adds the source's head.
//!
//! It exists so that everything that reports on connectors (`/ready`, `/metrics`, `/connectors`,
//! the management API, `run`'s progress output) reads one place that the connector tasks only
//! write to, and so never touches a connector's data path.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;

use chrono::Utc;
use serde_json::{Value, json};

pub use crate::outage::Dependency;
use crate::{
    event::Position,
    pipeline::{Progress, ProgressReceiver},
    sources::head::Head,
};

/// Where a connector's definition comes from: the config file, or the management API (kept in
/// the definition log of `--state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Api,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorState {
    /// Opening its sink, loading its checkpoints.
    Starting,
    /// Reading, reducing and applying.
    Running,
    /// Asked to stop (disabled through the API): finishing what it read.
    Stopping,
    /// Stopped cleanly (after a stop signal).
    Stopped,
    /// Stopped by an operator through the management API; stays so across restarts.
    Disabled,
    /// Stopped by an error, with the message the operator sees in the log.
    Failed(String),
    /// Waiting to take over a connector whose lease another gateway holds (or that this one
    /// cannot reach); says which.
    Standby(String),
    /// Waiting for a dependency that is down, at start or while running, with the latest
    /// reason; the connector goes on by itself once the dependency is back.
    Waiting { on: Dependency, reason: String, since: Instant },
}

impl ConnectorState {
    /// The state as `/connectors` names it (`running`, `standby`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
            Self::Failed(_) => "failed",
            Self::Standby(_) => "standby",
            Self::Waiting { on: Dependency::Sidecar, .. } => "waiting_for_sidecar",
            Self::Waiting { on: Dependency::Target, .. } => "waiting_for_target",
            Self::Waiting { on: Dependency::Source, .. } => "waiting_for_source",
        }
    }

    /// Every state name, in the order `/metrics` lists them.
    pub const NAMES: [&str; 10] = [
        "starting",
        "running",
        "waiting_for_sidecar",
        "waiting_for_target",
        "waiting_for_source",
        "standby",
        "stopping",
        "stopped",
        "disabled",
        "failed",
    ];

    /// A running (or starting) connector whose sidecar or target is in an outage waits for it.
    fn seen_through_outages(self, id: &str) -> Self {
        if !matches!(self, Self::Running | Self::Starting) {
            return self;
        }
        let Some(telemetry) = crate::telemetry::of_connector(id) else { return self };
        match telemetry.ongoing_outage() {
            Some((on, outage)) => Self::Waiting { on, reason: outage.reason, since: Instant::now() - outage.lasted },
            None => self,
        }
    }
}

struct Entry {
    id: String,
    origin: Origin,
    state: ConnectorState,
    progress: Option<ProgressReceiver>,
    /// The source's head at the last probe (see `head_probe::watch_source_head`).
    head: Option<Head>,
    /// The partition claims as this process last saw them (`lease.scope: partitions`).
    claims: Option<Value>,
}

impl Entry {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            id: self.id.clone(),
            origin: self.origin,
            state: self.state.clone().seen_through_outages(&self.id),
            progress: self.progress.as_ref().map(|p| p.borrow().clone()),
            head: self.head.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// What the endpoint reports of one connector at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub(super) id: String,
    pub(super) origin: Origin,
    pub(super) state: ConnectorState,
    pub(super) progress: Option<Progress>,
    pub(super) head: Option<Head>,
    pub(super) claims: Option<Value>,
}

impl Snapshot {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> &ConnectorState {
        &self.state
    }

    /// What the connector has committed, once it runs.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// The source's head at the last probe, when a probe runs and has answered.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Positions between the committed low watermark and the source's head.
    pub fn lag_positions(&self) -> Option<u64> {
        Some(self.head.as_ref()?.position.saturating_sub(self.progress.as_ref()?.low_watermark()))
    }

    /// Age of the oldest event not committed yet (0 when there is none).
    pub fn lag_seconds(&self) -> Option<f64> {
        let head = self.head.as_ref()?;
        Some(head.oldest_pending.map_or(0.0, |created| (Utc::now() - created).as_seconds_f64().max(0.0)))
    }

    /// The connector as `/connectors` lists it: id, origin, state (and error), checkpoint,
    /// counters and lag.
    pub fn to_json(&self) -> Value {
        let mut item = json!({ "id": self.id, "origin": self.origin.name(), "state": self.state.name() });
        match &self.state {
            ConnectorState::Failed(error) => item["error"] = json!(error),
            ConnectorState::Standby(why) => item["standby"] = json!(why),
            ConnectorState::Waiting { reason, since, .. } => {
                item["waiting"] = json!({ "reason": reason, "for_seconds": (since.elapsed().as_secs_f64() * 10.0).round() / 10.0 })
            }
            _ => {}
        }
        if let (Some(head), Some(positions), Some(seconds)) = (&self.head, self.lag_positions(), self.lag_seconds()) {
            item["source"] = json!({ "head": head.position, "lag_positions": positions, "lag_seconds": seconds });
        }
        if let Some(telemetry) = crate::telemetry::of_connector(&self.id) {
            let latest = telemetry.outages().into_iter().filter_map(|(on, outage)| Some((on, outage.last_failure()?))).max_by_key(|(_, (at, _))| *at);
            if let Some((on, (at, message))) = latest {
                item["last_error"] = json!({ "dependency": on.name(), "message": message, "at": at.to_rfc3339() });
            }
        }
        if let Some(claims) = &self.claims {
            item["claims"] = claims.clone();
        }
        if let Some(rebuild) = crate::pipeline::rebuild_report(&self.id) {
            item["rebuild"] = json!({
                "version": rebuild.version,
                "replaces": rebuild.replaces,
                "state": rebuild.state,
                "position": rebuild.position,
                "lag_positions": rebuild.lag(),
                "error": rebuild.error,
            });
        }
        if let Some(p) = &self.progress {
            let head = self.head.as_ref().map(|h| h.position);
            item["partitions"] = p
                .run_positions()
                .map(|(partition, position)| {
                    let mut one = json!({ "partition": partition, "position": position });
                    if let Some(head) = head {
                        one["lag_positions"] = json!(head.saturating_sub(position));
                    }
                    one
                })
                .collect();
            item["checkpoint"] = json!({ "low_watermark": p.low_watermark(), "partitions": p.positions });
            item["events_applied"] = json!(p.events_applied);
            item["operations_applied"] = json!(p.ops_applied);
            item["events_parked"] = json!(p.events_parked);
            item["batches_committed"] = json!(p.batches);
        }
        item
    }
}

/// The connectors of this process, as the endpoint reports them.
#[derive(Clone, Default)]
pub struct Connectors {
    entries: Arc<Mutex<Vec<Arc<Mutex<Entry>>>>>,
}

/// One connector's way of telling the registry how it is doing.
#[derive(Clone)]
pub struct ConnectorHandle {
    entry: Arc<Mutex<Entry>>,
}

impl Connectors {
    /// Registers a connector, in state `starting`.
    pub fn add(&self, id: &str, origin: Origin) -> ConnectorHandle {
        let entry = Entry { id: id.to_owned(), origin, state: ConnectorState::Starting, progress: None, head: None, claims: None };
        let entry = Arc::new(Mutex::new(entry));
        self.entries.lock().push(entry.clone());
        ConnectorHandle { entry }
    }

    /// Forgets a deleted connector.
    pub fn remove(&self, id: &str) {
        self.entries.lock().retain(|e| e.lock().id != id);
    }

    /// Each connector as it is now, in registration order.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let entries = self.entries.lock();
        entries.iter().map(|e| e.lock().snapshot()).collect()
    }

    /// The connector `id` as it is now.
    pub fn snapshot_of(&self, id: &str) -> Option<Snapshot> {
        let entries = self.entries.lock();
        entries.iter().map(|e| e.lock()).find(|e| e.id == id).map(|e| e.snapshot())
    }
}

impl ConnectorHandle {
    fn entry(&self) -> parking_lot::MutexGuard<'_, Entry> {
        self.entry.lock()
    }

    /// The connector is (re)starting. What it committed before and the source's head stay
    /// shown (the lag series do not vanish on enable) until it runs again.
    pub fn starting(&self) {
        self.entry().state = ConnectorState::Starting;
    }

    /// The connector loaded its checkpoints and runs; `progress` is its progress channel.
    pub fn started(&self, progress: ProgressReceiver) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Running;
        entry.progress = Some(progress);
    }

    /// The connector ended: cleanly, or with `error`.
    pub fn ended(&self, error: Option<String>) {
        self.entry().state = error.map_or(ConnectorState::Stopped, ConnectorState::Failed);
    }

    /// The connector waits for a dependency that is down (at start), for the reason given;
    /// a connector that waited before keeps the moment it began.
    pub fn waiting(&self, on: Dependency, reason: String) {
        let mut entry = self.entry();
        let since = match &entry.state {
            ConnectorState::Waiting { on: before, since, .. } if *before == on => *since,
            _ => Instant::now(),
        };
        entry.state = ConnectorState::Waiting { on, reason, since };
    }

    /// The connector's checkpoints were moved while it was not running (`reset`): its
    /// committed positions are these now, and its counters start again.
    pub fn checkpoints_moved(&self, positions: Vec<Position>) {
        let (_, progress) = crate::pipeline::progress_channel(positions);
        self.entry().progress = Some(progress);
    }

    /// The connector waits for its lease, for the reason given.
    pub fn standby(&self, why: String) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Standby(why);
        entry.progress = None;
        entry.head = None;
    }

    /// The partition claims as this process sees them now: the members, who holds which
    /// partition under which epoch, the rebalances so far.
    pub fn claims(&self, claims: Value) {
        self.entry().claims = Some(claims);
    }

    /// An operator disabled the connector; it finishes what it read.
    pub fn stopping(&self) {
        self.entry().state = ConnectorState::Stopping;
    }

    /// An operator disabled the connector (it has ended).
    pub fn disabled(&self) {
        self.entry().state = ConnectorState::Disabled;
    }

    /// The connector's state now.
    pub fn state(&self) -> ConnectorState {
        self.entry().state.clone()
    }

    /// The connector's state and, once it runs, its committed low watermark.
    pub(super) fn position(&self) -> (ConnectorState, Option<Position>) {
        let entry = self.entry();
        (entry.state.clone(), entry.progress.as_ref().map(|p| p.borrow().low_watermark()))
    }

    pub(super) fn set_head(&self, head: Option<Head>) {
        self.entry().head = head;
    }
}

/// What an operator sees in place of a secret.
pub const REDACTED: &str = "***";

/// The password of a URL's user info: `scheme://user:PASSWORD@host` (up to the last `@` before
/// the host, so a password with an unencoded `@` is redacted whole).
static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r#"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/?#@"'`<>]*):([^\s/?#"'`<>]*)@"#).expect("a valid regex")
});

/// `password=...` / `pwd=...` of a key/value connection string (libpq, SQL Server): the value
/// up to the next `;`, quote, brace or line end (in a libpq string the keys after it go too).
static KEY_VALUE_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r#"(?i)\b(password|pwd)(\s*=\s*)('(?:[^'\\\r\n]|\\.)*'|\{[^}\r\n]*\}|[^;"'}\r\n]+)"#).expect("a valid regex")
});

/// A `${NAME}` reference, expanded from the environment at start: the secret is not in the text.
static ENV_REFERENCE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\$\{[^}\s]+\}").expect("a valid regex"));

/// `text` with every secret it holds replaced by [`REDACTED`]. The one redaction of what the
/// operations endpoint answers: every string of its JSON bodies (a connector's error or
/// waiting reason on `/connectors`, the management API's errors, the definitions of
/// `GET /connectors/{id}/history`) and `/ready`'s lines. It redacts:
///
/// - the password of any URL (`postgres://user:***@host/db`, `redis://:***@host`, `mongodb://`,
///   `http(s)://`, `esdb://`, ...);
/// - the value of `password=`/`pwd=` in a key/value connection string (libpq, SQL Server);
/// - in a YAML or JSON definition (a text of several lines, or one that starts with `{` or
///   `[`), every header value (`headers:` of the HTTP sink) and the value of every key that
///   names a secret (`password`, `secret`, `token`, `api_key`, `authorization`, `credentials`,
///   `private_key`, `access_key`, ...).
///
/// A value made only of `${VAR}` references (after an auth scheme at most: `Bearer ${T}`)
/// holds no secret and is kept. A definition keeps its text (comments, order, quoting), each
/// secret replaced where it occurs; when one is too short to replace safely, or is written in a
/// form not found verbatim (an escape sequence), the definition is shown re-serialised from its
/// parsed form instead, secrets replaced.
pub fn redact_secrets(text: &str) -> String {
    let inline = redact_inline(text);
    let json_text = text.trim_start().starts_with(['{', '[']);
    // One line of prose (`a: failed: ...`) can read as YAML too; it is no definition.
    if !json_text && !text.trim().contains('\n') {
        return inline;
    }
    let Ok(parsed) = serde_yaml::from_str::<serde_yaml::Value>(&inline) else { return inline };
    if !matches!(parsed, serde_yaml::Value::Mapping(_) | serde_yaml::Value::Sequence(_)) {
        return inline;
    }
    let mut secrets = Vec::new();
    collect_secrets(&parsed, false, &mut secrets);
    if secrets.is_empty() {
        return inline;
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    if secrets.iter().all(|s| s.len() >= 4 && inline.contains(s.as_str())) {
        return secrets.iter().fold(inline, |out, secret| out.replace(secret.as_str(), REDACTED));
    }
    let mut parsed = parsed;
    redact_value(&mut parsed, false);
    let shown = if json_text { serde_json::to_string(&parsed).ok() } else { serde_yaml::to_string(&parsed).ok() };
    // Neither fails on a value just parsed; if one did, nothing of it is shown.
    shown.unwrap_or_else(|| REDACTED.to_owned())
}

/// Every string of a JSON value through [`redact_secrets`], in place.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => *s = redact_secrets(s),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// The secrets that free text shows recognisably: URL passwords and `password=` values.
fn redact_inline(text: &str) -> String {
    let text = URL_PASSWORD.replace_all(text, |c: &regex::Captures| {
        if c[2].is_empty() || only_references(&c[2]) { c[0].to_owned() } else { format!("{}:{REDACTED}@", &c[1]) }
    });
    KEY_VALUE_PASSWORD
        .replace_all(&text, |c: &regex::Captures| {
            if only_references(&c[3]) { c[0].to_owned() } else { format!("{}{}{REDACTED}", &c[1], &c[2]) }
        })
        .into_owned()
}

/// Whether a value names secrets kept elsewhere (`${VAR}`, `Bearer ${TOKEN}`) rather than
/// holding one.
fn only_references(value: &str) -> bool {
    let rest = ENV_REFERENCE.replace_all(value, "");
    ENV_REFERENCE.is_match(value) && matches!(rest.trim().to_ascii_lowercase().as_str(), "" | "bearer" | "basic" | "token" | "apikey")
}

/// Whether a mapping key names a secret.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    matches!(key.as_str(), "pwd" | "pass" | "auth")
        || ["password", "passwd", "secret", "token", "apikey", "api_key", "authorization", "credential", "private_key", "access_key"]
            .iter()
            .any(|word| key.contains(word))
}

/// The scalar's text, when it is one a secret can be (a string or a number).
fn scalar_text(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a scalar at a secret's place holds one.
fn holds_secret(value: &serde_yaml::Value) -> bool {
    scalar_text(value).is_some_and(|t| !t.is_empty() && t != REDACTED && !only_references(&t))
}

/// Whether a mapping entry's value sits at a secret's place (`secret`: its parent's does).
fn secret_place(key: &serde_yaml::Value, secret: bool) -> bool {
    let key = key.as_str().unwrap_or_default();
    secret || key.eq_ignore_ascii_case("headers") || secret_key(key)
}

/// The secret scalars of a parsed definition; `secret`: every scalar under `value` is one.
fn collect_secrets(value: &serde_yaml::Value, secret: bool, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => map.iter().for_each(|(key, item)| collect_secrets(item, secret_place(key, secret), out)),
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|item| collect_secrets(item, secret, out)),
        serde_yaml::Value::Tagged(tagged) => collect_secrets(&tagged.value, secret, out),
        scalar if secret && holds_secret(scalar) => out.extend(scalar_text(scalar)),
        _ => {}
    }
}

/// [`collect_secrets`]'s scalars replaced by [`REDACTED`] in place, and every other string
/// redacted as free text.
fn redact_value(value: &mut serde_yaml::Value, secret: bool) {
    match value {
        serde_yaml::Value::Mapping(map) => map.iter_mut().for_each(|(key, item)| redact_value(item, secret_place(key, secret))),
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(|item| redact_value(item, secret)),
        serde_yaml::Value::Tagged(tagged) => redact_value(&mut tagged.value, secret),
        scalar if secret && holds_secret(scalar) => *scalar = serde_yaml::Value::String(REDACTED.to_owned()),
        serde_yaml::Value::String(s) => *s = redact_inline(s),
        _ => {}
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn url_and_connection_string_passwords_are_redacted() {
        for (text, shown) in [
            ("postgres://gateway:s3cr3t@127.0.0.1:5432/db", "postgres://gateway:***@127.0.0.1:5432/db"),
            ("cannot connect to redis://:hunter2@cache:6379/0: refused", "cannot connect to redis://:***@cache:6379/0: refused"),
            ("mongodb://u:p%40ss@h1,h2/?replicaSet=rs", "mongodb://u:***@h1,h2/?replicaSet=rs"),
            ("http://user:p@ss@host/x?a=b@c", "http://user:***@host/x?a=b@c"),
            ("esdb://admin:changeit@localhost:2113?tls=false", "esdb://admin:***@localhost:2113?tls=false"),
            ("http://host:8080/path@x and https://example.com", "http://host:8080/path@x and https://example.com"),
            ("Server=tcp:db,1433;User Id=gw;Password=pa ss;Encrypt=true", "Server=tcp:db,1433;User Id=gw;Password=***;Encrypt=true"),
            ("host=db password='s e c' dbname=app", "host=db password=*** dbname=app"),
            ("postgres://u:${PG_PASSWORD}@db/app", "postgres://u:${PG_PASSWORD}@db/app"),
            ("bookings: failed: no such table", "bookings: failed: no such table"),
            ("running", "running"),
            ("api-token-sync: starting", "api-token-sync: starting"),
            ("", ""),
        ] {
            assert_eq!(redact_secrets(text), shown, "{text}");
        }
    }

    #[test]
    fn definitions_keep_their_text_with_header_and_secret_key_values_redacted() {
        let yaml = "id: hooks  # the webhooks\nsink:\n  http:\n    url: \"https://hook:basic-pass@example.com/in\"\n    headers: { x-api-key: k3y-value-123, authorization: \"Bearer ${HOOK_TOKEN}\" }\n  postgres: { url: \"host=db password=pw-9876 user=u\" }\nclient_secret: 123456789\n";
        let shown = redact_secrets(yaml);
        for secret in ["basic-pass", "k3y-value-123", "pw-9876", "123456789"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("# the webhooks") && shown.contains("Bearer ${HOOK_TOKEN}") && shown.contains("x-api-key: ***"), "{shown}");
        let json = r#"{"id":"a","sink":{"redis":{"url":"redis://:r3dis-pass@h:6379/0"}},"token":"tok-abcdef"}"#;
        assert_eq!(redact_secrets(json), r#"{"id":"a","sink":{"redis":{"url":"redis://:***@h:6379/0"}},"token":"***"}"#);
    }

    #[test]
    fn secrets_not_found_verbatim_or_too_short_are_redacted_in_a_re_serialised_form() {
        let escaped = r#"{"id":"a","password":"s\u0033cret-value","note":"x"}"#;
        let shown = redact_secrets(escaped);
        assert!(!shown.contains("s3cret-value") && !shown.contains("s\\u0033cret"), "{shown}");
        assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), json!({ "id": "a", "password": "***", "note": "x" }));
        let short = "id: a\nsink: { http: { url: \"http://h/in\", headers: { x-k: ab } } }\n";
        let parsed: serde_yaml::Value = serde_yaml::from_str(&redact_secrets(short)).unwrap();
        assert_eq!(parsed["sink"]["http"]["headers"]["x-k"], "***");
        assert_eq!(parsed["id"], "a");
    }

    #[test]
    fn every_string_of_a_json_body_is_redacted() {
        let mut body = json!([{ "id": "pg", "state": "failed", "error": "postgres://u:pw-1234@db/app: refused", "n": 3 }]);
        redact_json(&mut body);
        assert_eq!(body, json!([{ "id": "pg", "state": "failed", "error": "postgres://u:***@db/app: refused", "n": 3 }]));
    }
}
