//! Where a connector's partition streams go when its sidecar runs as several replicas: the
//! endpoints of `sidecar.addresses` (or of one `address` whose name resolves to several IPs, a
//! Kubernetes headless Service), each with its own channel, and which one each partition uses.
//!
//! It exists so that replicas can be added, removed and rolled while the connector runs,
//! without losing an event or alarming anyone. The sidecar is stateless and answers are matched
//! in order per stream, so a partition's stream may move between replicas at any time, exactly
//! as it reconnects: the stream ends and every unanswered event is sent again on the new one.
//!
//! - Names are resolved again every `resolve_every_secs` (and at once when an endpoint fails:
//!   a replaced replica may have a new IP) by a task owned here; a name that does not resolve
//!   keeps its last endpoints (or, never resolved, is one endpoint that tonic resolves).
//! - Each partition goes to its rendezvous (highest random weight) owner among the live
//!   endpoints, with bounded loads: no endpoint takes more than 1.125 x its share, rounded up
//!   (a partition whose first choice is full goes to its next), so N replicas run the connector
//!   at nearly N times one replica's rate; an endpoint added or removed moves about its share.
//! - An endpoint whose stream fails is left out of the live ones at once, so its partitions
//!   move to their next-ranked endpoint without a backoff, with one INFO line per endpoint (not
//!   per partition). It is tried again once it takes TCP connections (checked at each resolve,
//!   less often each time it fails again without answering), and is live again once it answers.
//! - When no endpoint is live, every partition tries them in its rendezvous order, one per
//!   attempt, with the backoff and the outage report of a sidecar that is down
//!   (`waiting_for_sidecar`), as with one address.
//!
//! Partition streams see every change through a `watch` channel ([`EndpointView`]).

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
    time::Instant,
};
use tonic::transport::{Channel, ClientTlsConfig, Uri};
use tracing::{debug, info};

use super::{ChannelError, connect_lazily, tls_settings};
use crate::{config::SidecarConfig, telemetry::ConnectorTelemetry};

/// How long one name may take to resolve, and a down endpoint to take a TCP connection.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two resolutions asked for by failures.
const RESOLVE_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// The longest wait before a down endpoint that keeps failing is checked again, in resolve periods.
const MAX_HOLD_DOUBLINGS: u32 = 5;

/// One place a partition stream can go.
pub struct Endpoint {
    /// Where the connection goes, e.g. `http://10.1.2.3:50051` (the address itself when its
    /// name could not be resolved); the rendezvous key.
    pub key: Arc<str>,
    /// The configured address it is an endpoint of.
    pub address: Arc<str>,
    /// `host:port` to check that a down endpoint takes connections again.
    socket: String,
    channel: Channel,
    /// False while the endpoint is known to answer: the fast path of [`EndpointView::serving`].
    suspect: AtomicBool,
}

impl Endpoint {
    /// Its channel (cheap to clone: streams share its HTTP/2 connection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key == self.address { f.write_str(&self.key) } else { write!(f, "{} ({})", self.key, self.address) }
    }
}

/// The endpoints as partition streams see them at one moment.
pub struct EndpointSet {
    /// Every endpoint resolved, by key; never empty.
    all: Vec<Arc<Endpoint>>,
    /// Those not known to be failing.
    live: Vec<Arc<Endpoint>>,
    /// Each partition's owner, an index into `live` ([`assign`]); empty when none is live.
    owners: Vec<usize>,
}

impl EndpointSet {
    /// Where `partition`'s stream goes after `failures` consecutive attempts that found no live
    /// endpoint: its rendezvous owner among the live endpoints; when none is live, the
    /// endpoints in its rendezvous order, one per attempt.
    pub fn pick(&self, partition: u32, failures: u32) -> &Arc<Endpoint> {
        match self.owner(partition) {
            Some(owner) => owner,
            None => {
                let ranked = rank(partition, &self.all, |e| &e.key);
                ranked[failures as usize % ranked.len()]
            }
        }
    }

    /// `partition`'s owner among the live endpoints ([`assign`]).
    pub fn owner(&self, partition: u32) -> Option<&Arc<Endpoint>> {
        match self.owners.get(partition as usize) {
            Some(&owner) => self.live.get(owner),
            // A partition beyond the connector's count (none is): its first choice.
            None => rank(partition, &self.live, |e| &e.key).into_iter().next(),
        }
    }

    /// The endpoint for the `attempt`-th try of a call any replica may answer (`Describe`): the
    /// live endpoints in turn, else every endpoint in turn.
    pub fn in_turn(&self, attempt: u32) -> &Arc<Endpoint> {
        let from = if self.live.is_empty() { &self.all } else { &self.live };
        &from[attempt as usize % from.len()]
    }

    /// How many endpoints there are, live or not.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Never: an address that does not resolve is an endpoint of its own.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn same_as(&self, other: &EndpointSet) -> bool {
        let keys = |list: &[Arc<Endpoint>]| list.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
        keys(&self.all) == keys(&other.all) && keys(&self.live) == keys(&other.live)
    }
}

/// The most partitions one endpoint holds: its share and an eighth, rounded up. With N replicas
/// the busiest holds at most 1.125 x P/N partitions, so the connector runs at 0.89 x N replicas'
/// rate or better (as far as partitions carry alike); the slack keeps an endpoint added or
/// removed from moving many more partitions than its share (an exact share, `ceil(P/N)`, moves
/// up to half of them).
fn capacity(partitions: u32, endpoints: usize) -> usize {
    (partitions as usize * 9).div_ceil(endpoints * 8)
}

/// Each of `partitions` partitions' owner among `items` (an index), by rendezvous hashing with
/// bounded loads: partition after partition, the highest-ranked item that holds fewer than
/// [`capacity`] of them. Deterministic: every gateway computes the same.
fn assign<T>(partitions: u32, items: &[T], key: impl Fn(&T) -> &str) -> Vec<usize> {
    if items.is_empty() {
        return Vec::new();
    }
    let capacity = capacity(partitions, items.len());
    let mut load = vec![0usize; items.len()];
    let index: HashMap<&str, usize> = items.iter().enumerate().map(|(i, item)| (key(item), i)).collect();
    (0..partitions)
        .map(|partition| {
            let ranked = rank(partition, items, &key);
            let chosen = ranked.iter().map(|item| index[key(item)]).find(|&i| load[i] < capacity).expect("capacity covers every partition");
            load[chosen] += 1;
            chosen
        })
        .collect()
}

/// `items` from the highest rendezvous weight for `partition` to the lowest (ties by key).
fn rank<T>(partition: u32, items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut ranked: Vec<(u64, &str, &T)> = items.iter().map(|item| (weight(partition, key(item)), key(item), item)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, _, item)| item).collect()
}

/// The rendezvous weight of `(partition, endpoint key)`: 64-bit FNV-1a, whose output the
/// splitmix64 finaliser spreads (FNV alone ranks similar keys, `…:50051` and `…:50052`, alike
/// for many partitions). Fixed, so every gateway and every release place partitions alike.
fn weight(partition: u32, key: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in partition.to_le_bytes().iter().chain(key.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// What is known of one endpoint's health.
#[derive(Clone, Copy, Debug)]
enum Health {
    /// Answers, or has not failed.
    Up,
    /// A stream on it failed: left out of the live endpoints; checked again from `check_at`.
    /// `strikes` counts the failures since it last answered, `announced` whether its failure
    /// was told at INFO (then its return is too).
    Down { check_at: Instant, strikes: u32, announced: bool },
    /// Takes connections again, live again; not yet proven by an answer.
    Trial { strikes: u32, announced: bool },
}

struct State {
    /// Every endpoint resolved, by key.
    endpoints: Vec<Arc<Endpoint>>,
    health: HashMap<Arc<str>, Health>,
    /// The endpoints of each configured address (kept when its name fails to resolve).
    resolved: Vec<(Arc<str>, Vec<Arc<Endpoint>>)>,
}

struct Shared {
    connector: Arc<str>,
    /// The connector's partition count: what the endpoints' loads are bounded by.
    partitions: u32,
    every: Duration,
    /// The TLS settings of each configured address, read once.
    tls: HashMap<Arc<str>, Option<ClientTlsConfig>>,
    state: Mutex<State>,
    published: watch::Sender<Arc<EndpointSet>>,
    resolve_now: Notify,
    telemetry: Arc<ConnectorTelemetry>,
}

/// The endpoints of one connector's sidecar, kept up to date while this lives (its task ends
/// when it is dropped).
pub struct Endpoints {
    shared: Arc<Shared>,
    _refresher: JoinSet<()>,
}

impl Endpoints {
    /// Resolves `config`'s addresses and keeps them resolved; an error says which address or TLS
    /// setting cannot be used.
    pub async fn start(connector: &str, config: &SidecarConfig, partitions: u32, telemetry: Arc<ConnectorTelemetry>) -> Result<Self, ChannelError> {
        let addresses = config.addresses();
        if addresses.is_empty() {
            return Err(ChannelError("no sidecar address is configured (`address` or `addresses`)".into()));
        }
        let mut tls = HashMap::new();
        for address in &addresses {
            tls.insert(Arc::<str>::from(*address), tls_settings(config, address)?);
        }
        let mut resolved = Vec::new();
        for address in &addresses {
            let address = Arc::<str>::from(*address);
            let found = match lookup(&address).await {
                Ok(found) if !found.is_empty() => found,
                _ => vec![Located::Unresolved],
            };
            let endpoints = found.iter().map(|at| endpoint(&address, at, tls[&address].clone())).collect::<Result<Vec<_>, _>>()?;
            resolved.push((address, endpoints));
        }
        let state = State { endpoints: Vec::new(), health: HashMap::new(), resolved };
        let (published, _) = watch::channel(Arc::new(EndpointSet { all: Vec::new(), live: Vec::new(), owners: Vec::new() }));
        let shared = Arc::new(Shared {
            connector: connector.into(),
            every: Duration::from_secs(config.resolve_every_secs.max(1)),
            partitions,
            tls,
            state: Mutex::new(state),
            published,
            resolve_now: Notify::new(),
            telemetry,
        });
        {
            let mut state = shared.state.lock();
            state.endpoints = gather(&state.resolved);
            shared.publish(&state);
            if state.endpoints.len() > 1 {
                let shown: Vec<String> = state.endpoints.iter().map(ToString::to_string).collect();
                info!(
                    connector,
                    "{} sidecar endpoints: {}; each partition stream goes to one of them (rendezvous hashing)",
                    shown.len(),
                    shown.join(", ")
                );
            }
        }
        let mut refresher = JoinSet::new();
        refresher.spawn(refresh(shared.clone()));
        Ok(Self { shared, _refresher: refresher })
    }

    /// A partition's view of the endpoints.
    pub fn view(&self) -> EndpointView {
        EndpointView { shared: self.shared.clone(), updates: self.shared.published.subscribe() }
    }
}

/// What a partition stream (or `Describe`) sees of the endpoints, and tells of them.
#[derive(Clone)]
pub struct EndpointView {
    shared: Arc<Shared>,
    updates: watch::Receiver<Arc<EndpointSet>>,
}

impl EndpointView {
    /// The endpoints now (seen: [`EndpointView::changed`] waits for the next change).
    pub fn current(&mut self) -> Arc<EndpointSet> {
        self.updates.borrow_and_update().clone()
    }

    /// Waits until the endpoints change, and returns them.
    pub async fn changed(&mut self) -> Arc<EndpointSet> {
        // The sender lives in `shared`, which this view holds: the wait ends only on a change.
        let _ = self.updates.changed().await;
        self.updates.borrow_and_update().clone()
    }

    /// A stream (or call) on `endpoint` failed for `reason`: it is left out of the live
    /// endpoints. True when another endpoint is live, to go to at once; false when none is (the
    /// sidecar is down, as far as the connector can tell).
    pub fn failed(&self, endpoint: &Endpoint, reason: &str) -> bool {
        let shared = &self.shared;
        shared.resolve_now.notify_one();
        let mut state = shared.state.lock();
        let Some(health) = state.health_of(&endpoint.key) else {
            // No longer resolved: its partitions have moved already.
            return !shared.published.borrow().live.is_empty();
        };
        let (strikes, announced) = match health {
            Health::Up => (1, false),
            Health::Trial { strikes, announced } => (strikes + 1, announced),
            Health::Down { .. } => return !shared.published.borrow().live.is_empty(),
        };
        let hold = shared.every * 2u32.pow((strikes - 1).min(MAX_HOLD_DOUBLINGS));
        endpoint.suspect.store(true, Ordering::Release);
        let live: Vec<String> = state.endpoints.iter().filter(|e| e.key != endpoint.key && state.is_live(&e.key)).map(ToString::to_string).collect();
        // Told once per endpoint that stops answering; a replica that fails again before it
        // answered once more, or the last one (the sidecar's outage is told instead), is not.
        let announce = strikes == 1 && !live.is_empty();
        state.health.insert(endpoint.key.clone(), Health::Down { check_at: Instant::now() + hold, strikes, announced: announced || announce });
        shared.publish(&state);
        if announce {
            info!(
                connector = %shared.connector,
                "sidecar endpoint {endpoint} stopped answering ({reason}); its partition streams move to {} and come back once it answers \
                 again (unanswered events are sent again, nothing is lost)",
                live.join(", ")
            );
        } else {
            debug!(connector = %shared.connector, "sidecar endpoint {endpoint} failed again ({reason}); {} other endpoint(s) live", live.len());
        }
        !live.is_empty()
    }

    /// `endpoint` answered: live again if it was not.
    pub fn serving(&self, endpoint: &Endpoint) {
        if !endpoint.suspect.load(Ordering::Acquire) {
            return;
        }
        let shared = &self.shared;
        let mut state = shared.state.lock();
        let Some(health) = state.health_of(&endpoint.key) else { return };
        endpoint.suspect.store(false, Ordering::Release);
        state.health.insert(endpoint.key.clone(), Health::Up);
        shared.publish(&state);
        if let Health::Down { announced: true, .. } | Health::Trial { announced: true, .. } = health {
            info!(connector = %shared.connector, "sidecar endpoint {endpoint} answers again; its partition streams are back on it");
        }
    }
}

impl State {
    /// How `key` is doing; `None` once it is no longer resolved.
    fn health_of(&self, key: &Arc<str>) -> Option<Health> {
        let resolved = self.endpoints.iter().any(|e| e.key == *key);
        resolved.then(|| self.health.get(key).copied().unwrap_or(Health::Up))
    }

    fn is_live(&self, key: &Arc<str>) -> bool {
        !matches!(self.health.get(key), Some(Health::Down { .. }))
    }
}

impl Shared {
    /// Sends the endpoints to the partitions, when they changed.
    fn publish(&self, state: &State) {
        let live: Vec<Arc<Endpoint>> = state.endpoints.iter().filter(|e| state.is_live(&e.key)).cloned().collect();
        let owners = assign(self.partitions, &live, |e| &e.key);
        let set = EndpointSet { all: state.endpoints.clone(), live, owners };
        let keys: Vec<Arc<str>> = set.all.iter().map(|e| e.key.clone()).collect();
        self.telemetry.sidecar_streams.known(&keys);
        self.published.send_if_modified(|current| {
            let changed = !current.same_as(&set);
            if changed {
                *current = Arc::new(set);
            }
            changed
        });
    }

    /// Takes what the addresses resolve to now (`None`: the name did not resolve; kept as it was).
    fn update(&self, lookups: Vec<(Arc<str>, Option<Vec<Located>>)>) {
        let mut state = self.state.lock();
        let mut told = Vec::new();
        for (address, found) in lookups {
            let Some(found) = found.filter(|f| !f.is_empty()) else { continue };
            let Some(slot) = state.resolved.iter().position(|(a, _)| *a == address) else { continue };
            let before = &state.resolved[slot].1;
            let keys: Vec<Arc<str>> = found.iter().map(|at| at.key(&address)).collect();
            if before.len() == keys.len() && before.iter().all(|e| keys.contains(&e.key)) {
                continue;
            }
            let mut endpoints = Vec::new();
            for (at, key) in found.iter().zip(&keys) {
                match before.iter().find(|e| e.key == *key) {
                    Some(kept) => endpoints.push(kept.clone()),
                    // Built from the settings read at start; only an impossible URI fails here.
                    None => match endpoint(&address, at, self.tls.get(&address).cloned().flatten()) {
                        Ok(new) => endpoints.push(new),
                        Err(e) => debug!(connector = %self.connector, "sidecar endpoint {key} cannot be used: {e}"),
                    },
                }
            }
            if endpoints.is_empty() {
                continue;
            }
            let added: Vec<&str> = keys.iter().filter(|k| !before.iter().any(|e| e.key == **k)).map(|k| &**k).collect();
            let removed: Vec<&str> = before.iter().filter(|e| !keys.contains(&e.key)).map(|e| &*e.key).collect();
            told.push(format!(
                "`{address}` resolves to {} endpoint(s) now (added: {}; removed: {})",
                endpoints.len(),
                if added.is_empty() { "none".to_owned() } else { added.join(", ") },
                if removed.is_empty() { "none".to_owned() } else { removed.join(", ") },
            ));
            state.resolved[slot].1 = endpoints;
        }
        if told.is_empty() {
            return;
        }
        state.endpoints = gather(&state.resolved);
        let keys: Vec<Arc<str>> = state.endpoints.iter().map(|e| e.key.clone()).collect();
        state.health.retain(|key, _| keys.contains(key));
        self.publish(&state);
        info!(
            connector = %self.connector,
            "{}; the partition streams of removed endpoints move, added ones take their share (unanswered events are sent again)",
            told.join("; ")
        );
    }

    /// Puts the down endpoints due for a check that take TCP connections again on trial.
    async fn check_down(&self) {
        let due: Vec<Arc<Endpoint>> = {
            let state = self.state.lock();
            let now = Instant::now();
            state
                .endpoints
                .iter()
                .filter(|e| matches!(state.health.get(&e.key), Some(Health::Down { check_at, .. }) if *check_at <= now))
                .cloned()
                .collect()
        };
        for endpoint in due {
            let takes = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::TcpStream::connect(endpoint.socket.as_str())).await;
            if !matches!(takes, Ok(Ok(_))) {
                let mut state = self.state.lock();
                if let Some(Health::Down { check_at, .. }) = state.health.get_mut(&endpoint.key) {
                    *check_at = Instant::now() + self.every;
                }
                continue;
            }
            let mut state = self.state.lock();
            if let Some(Health::Down { strikes, announced, .. }) = state.health.get(&endpoint.key).copied() {
                debug!(connector = %self.connector, "sidecar endpoint {endpoint} takes connections again; its partition streams try it");
                state.health.insert(endpoint.key.clone(), Health::Trial { strikes, announced });
                self.publish(&state);
            }
        }
    }
}

/// Every endpoint of every address, by key, each once.
fn gather(resolved: &[(Arc<str>, Vec<Arc<Endpoint>>)]) -> Vec<Arc<Endpoint>> {
    let mut all: Vec<Arc<Endpoint>> = Vec::new();
    for endpoint in resolved.iter().flat_map(|(_, endpoints)| endpoints) {
        if !all.iter().any(|e| e.key == endpoint.key) {
            all.push(endpoint.clone());
        }
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    all
}

/// Resolves the names again every period, and soon after a failure asked for it; checks the
/// down endpoints.
async fn refresh(shared: Arc<Shared>) {
    let addresses: Vec<Arc<str>> = shared.state.lock().resolved.iter().map(|(address, _)| address.clone()).collect();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last + shared.every) => {}
            _ = shared.resolve_now.notified() => tokio::time::sleep_until(last + RESOLVE_AT_MOST_EVERY).await,
        }
        last = Instant::now();
        let mut lookups = Vec::with_capacity(addresses.len());
        for address in &addresses {
            let found = match lookup(address).await {
                Ok(found) => Some(found),
                Err(e) => {
                    debug!(connector = %shared.connector, "`{address}` does not resolve now ({e}); its endpoints are kept");
                    None
                }
            };
            lookups.push((address.clone(), found));
        }
        shared.update(lookups);
        shared.check_down().await;
    }
}

/// Where an address leads: an IP and port, or its name when it did not resolve.
#[derive(Clone, Debug)]
enum Located {
    At(SocketAddr),
    Unresolved,
}

impl Located {
    fn key(&self, address: &str) -> Arc<str> {
        match self {
            Located::At(at) => format!("{}://{at}", scheme(address)).into(),
            Located::Unresolved => address.trim_end_matches('/').into(),
        }
    }
}

fn scheme(address: &str) -> &str {
    if super::tls::is_https(address) { "https" } else { "http" }
}

/// The IPs and port `address` leads to: its IP as it is, or what its name resolves to.
async fn lookup(address: &str) -> Result<Vec<Located>, String> {
    let (host, port) = host_and_port(address)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![Located::At(SocketAddr::new(ip, port))]);
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await {
        Ok(Ok(found)) => {
            let mut found: Vec<SocketAddr> = found.collect();
            found.sort();
            found.dedup();
            Ok(found.into_iter().map(Located::At).collect())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// `address`'s host (an IPv6 one without brackets) and port (the scheme's when none is given).
fn host_and_port(address: &str) -> Result<(String, u16), String> {
    let uri: Uri = address.parse().map_err(|e| format!("`{address}` is not a URI: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("`{address}` has no host"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_owned();
    let port = uri.port_u16().unwrap_or(if scheme(address) == "https" { 443 } else { 80 });
    Ok((host, port))
}

/// The endpoint of `address` at `at`, with a channel of its own.
fn endpoint(address: &Arc<str>, at: &Located, tls: Option<ClientTlsConfig>) -> Result<Arc<Endpoint>, ChannelError> {
    let key = at.key(address);
    let (channel, socket) = match at {
        Located::At(socket) => (connect_lazily(address, Some(&key), tls)?, socket.to_string()),
        Located::Unresolved => {
            let (host, port) = host_and_port(address).map_err(ChannelError)?;
            (connect_lazily(address, None, tls)?, format!("{host}:{port}"))
        }
    };
    Ok(Arc::new(Endpoint { key, address: address.clone(), socket, channel, suspect: AtomicBool::new(false) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("http://10.0.0.{i}:50051")).collect()
    }

    fn owners(partitions: u32, keys: &[String]) -> Vec<String> {
        assign(partitions, keys, |k| k).into_iter().map(|i| keys[i].clone()).collect()
    }

    #[test]
    fn partitions_spread_over_the_endpoints() {
        for partitions in [16u32, 64] {
            for count in 1..=8 {
                let keys = keys(count);
                let owners = owners(partitions, &keys);
                // Bounded loads: nobody holds more than its share rounded up, so the busiest
                // replica is never the bottleneck of a connector spread over N.
                let most = capacity(partitions, count);
                for key in &keys {
                    let got = owners.iter().filter(|o| *o == key).count();
                    assert!(got <= most, "{partitions} partitions over {count} endpoints: {key} got {got} (at most {most})");
                }
            }
        }
    }

    /// How many of `old`'s owners differ in `new`.
    fn moved(old: &[String], new: &[String]) -> usize {
        old.iter().zip(new).filter(|(was, is)| was != is).count()
    }

    #[test]
    fn an_endpoint_added_or_removed_moves_about_its_share() {
        for partitions in [16u32, 64] {
            for count in 1..8 {
                let (before, after) = (keys(count), keys(count + 1));
                let (old, new) = (owners(partitions, &before), owners(partitions, &after));
                let added = &after[count];
                let share = (partitions as usize).div_ceil(count + 1);
                assert!(new.iter().any(|o| o == added), "the added endpoint takes some partitions");
                // Bounded loads move a little more than pure rendezvous hashing would (a partition
                // whose first choice filled up goes to its next): at most twice the share.
                let moves = moved(&old, &new);
                assert!(moves <= 2 * share, "{partitions} partitions, {count} -> {} endpoints: {moves} moved (share {share})", count + 1);
                let fewer: Vec<String> = after[1..].to_vec();
                let moves = moved(&new, &owners(partitions, &fewer));
                assert!(moves <= 2 * share + 2, "{partitions} partitions, {} -> {count} endpoints: {moves} moved", count + 1);
            }
        }
    }

    #[test]
    fn the_weight_is_stable() {
        // Every gateway, and every release, must place a partition on the same endpoint.
        assert_eq!(weight(0, "http://10.0.0.1:50051"), weight(0, "http://10.0.0.1:50051"));
        assert_ne!(weight(0, "http://10.0.0.1:50051"), weight(1, "http://10.0.0.1:50051"));
        assert_eq!(owners(4, &keys(3)), owners(4, &keys(3)));
    }

    fn sidecar(yaml: &str) -> SidecarConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    async fn started(yaml: &str) -> Endpoints {
        let telemetry = crate::telemetry::for_connector("endpoints-test");
        Endpoints::start("endpoints-test", &sidecar(yaml), 16, telemetry).await.unwrap()
    }

    /// The next change of the endpoints, within a deadline.
    async fn next(view: &mut EndpointView) -> Arc<EndpointSet> {
        tokio::time::timeout(Duration::from_secs(5), view.changed()).await.expect("the endpoints change")
    }

    #[tokio::test]
    async fn a_failed_endpoint_leaves_the_live_ones_until_it_answers() {
        let endpoints = started("addresses: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3]").await;
        let mut view = endpoints.view();
        let set = view.current();
        assert_eq!(set.len(), 3);
        let owners: Vec<Arc<str>> = (0..16).map(|p| set.pick(p, 0).key.clone()).collect();
        let dead = set.pick(0, 0).clone();

        assert!(view.failed(&dead, "connection refused"), "two endpoints are still live");
        let moved = next(&mut view).await;
        let mut others_moved = 0;
        for p in 0..16 {
            let now = &moved.pick(p, 0).key;
            assert_ne!(*now, dead.key, "partition {p} left the failed endpoint");
            others_moved += usize::from(owners[p as usize] != dead.key && *now != owners[p as usize]);
        }
        // Bounded loads: a partition of the failed endpoint may take a live one's place, which
        // then goes to its next choice; few do.
        assert!(others_moved <= 3, "{others_moved} partitions of live endpoints moved");

        view.serving(&dead);
        let back = next(&mut view).await;
        assert!((0..16).all(|p| back.pick(p, 0).key == owners[p as usize]), "every partition is back where it was");
    }

    #[tokio::test]
    async fn when_no_endpoint_is_live_each_attempt_tries_the_next() {
        let endpoints = started("addresses: [http://127.0.0.1:1, http://127.0.0.1:2]").await;
        let mut view = endpoints.view();
        let set = view.current();
        let first = set.pick(5, 0).clone();
        assert_eq!(first.key, set.pick(5, 1).key, "with endpoints live, the attempt does not matter");
        let second = set.all.iter().find(|e| e.key != first.key).unwrap().clone();
        assert!(view.failed(&first, "refused"));
        assert!(!view.failed(&second, "refused"), "the last live endpoint failed");
        let none = view.current();
        assert!(none.owner(5).is_none());
        let tried: Vec<Arc<str>> = (0..4).map(|attempt| none.pick(5, attempt).key.clone()).collect();
        assert_eq!(tried, [first.key.clone(), second.key.clone(), first.key.clone(), second.key.clone()]);
    }

    #[tokio::test]
    async fn an_endpoint_set_that_changes_moves_only_the_partitions_of_the_changed_endpoints() {
        let endpoints = started("addresses: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3]").await;
        let mut view = endpoints.view();
        let before = view.current();
        let owners: Vec<Arc<str>> = (0..64).map(|p| before.pick(p, 0).key.clone()).collect();
        // The third address now leads to two replicas, the second to none (a new IP instead).
        let at = |port| Located::At(SocketAddr::from(([127, 0, 0, 1], port)));
        endpoints.shared.update(vec![
            ("http://127.0.0.1:2".into(), Some(vec![at(4)])),
            ("http://127.0.0.1:3".into(), Some(vec![at(3), at(5)])),
        ]);
        let after = next(&mut view).await;
        assert_eq!(after.len(), 4);
        for p in 0..64 {
            let (was, is) = (&owners[p as usize], &after.pick(p, 0).key);
            let moved_for_a_reason = &**was == "http://127.0.0.1:2" || ["http://127.0.0.1:4", "http://127.0.0.1:5"].contains(&&**is);
            assert!(was == is || moved_for_a_reason, "partition {p} moved from {was} to {is}");
        }
        let gauge: Vec<String> = endpoints.shared.telemetry.sidecar_streams.counts().into_iter().map(|(k, _)| k.to_string()).collect();
        assert!(gauge.iter().any(|k| k == "http://127.0.0.1:5"), "the gauge lists the new endpoint: {gauge:?}");
    }

    #[tokio::test]
    async fn an_https_endpoint_at_an_ip_keeps_the_name_of_its_address() {
        let endpoints = started("address: https://localhost:50443").await;
        let set = endpoints.view().current();
        for endpoint in &set.all {
            assert_eq!(&*endpoint.address, "https://localhost:50443");
            assert!(endpoint.key.starts_with("https://"), "{}", endpoint.key);
        }
        // The certificate is checked against `localhost` (tls.rs puts the name in the settings).
        let settings = tls_settings(&sidecar("address: https://localhost:50443"), "https://localhost:50443").unwrap().unwrap();
        assert!(format!("{settings:?}").contains("localhost"), "{settings:?}");
    }
}
