//! The reducer client: one bidirectional gRPC stream per partition to the sidecar, pipelined.
//!
//! Each partition keeps up to `window` events in flight; the sidecar must answer them in
//! request order, matched by eventId. Answers are decoded into the sink's typed operations
//! right here (in the partition's own task, so decoding runs in parallel) and handed to the
//! partition's sink writer in order. A broken stream is reopened with backoff and every
//! unanswered event is sent again, in order. Several sidecar replicas (`sidecar.addresses`, or
//! a name that resolves to several IPs) share the partitions by rendezvous hashing
//! (`endpoints.rs`); a stream moves to another replica as it would reconnect. An event the sidecar cannot handle (wrong or
//! out-of-order answer, unknown operation, reported error, no answer in time) goes to the
//! connector's poison policy. A sidecar that answers only the events it handles
//! (`answers: handled`) has its silences settled by later answers or by probes, never by a
//! timer (`silence.rs`).

mod describe;
mod endpoints;
mod request;
mod silence;
mod stream;
pub mod tls;
mod window;

use std::{sync::Arc, time::Duration};

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use tracing::{info, warn};

use crate::{
    config::{Answers, SidecarConfig, TimeoutPolicy},
    event::{Event, Position},
};

pub use describe::{DescribeError, Described, describe, describe_once};
pub use endpoints::{Endpoint as SidecarEndpoint, EndpointSet, EndpointView, Endpoints};
pub use request::build_request;
pub use silence::{Answered, Silence};
pub use stream::{PartitionReducer, ReducerError, poisoned};

/// What the router hands a partition.
#[derive(Debug)]
pub enum RoutedItem {
    /// An event to reduce.
    Event(Arc<Event>),
    /// The log has been read up to this position: once everything before it in this
    /// partition is done, the partition's checkpoint may move here.
    ReadUpTo(Position),
}

/// Says at a connector's start how its sidecar's answers are read, and what an old
/// `on_timeout: ignore` means now.
pub fn announce_answers(connector: &str, config: &SidecarConfig) {
    match config.answers {
        Answers::All => info!(
            connector,
            address = %config.shown_addresses(),
            "the sidecar answers every event, in order (`sidecar.answers: all`)"
        ),
        Answers::Handled => info!(
            connector,
            address = %config.shown_addresses(),
            "the sidecar answers only the events it handles (`sidecar.answers: handled`): an unanswered event counts as ignored once the \
             sidecar answers a request sent after it (at the end of a backlog, a probe: an event it answered before, sent again), \
             never because a timer ran out"
        ),
    }
    if config.on_timeout == TimeoutPolicy::Ignore {
        warn!(
            connector,
            "`sidecar.on_timeout: ignore` no longer skips an event whose answer is late (a slow sidecar's answers were lost that way); \
             it now means `retry`. Remove it: with `sidecar.answers: handled`, events the sidecar does not answer are settled without it"
        );
    }
}

/// A failed call's status, for a log line: a failed TLS handshake said so, with rustls's
/// reason (`TLS handshake failed: invalid peer certificate: UnknownIssuer`); otherwise the code
/// and each distinct cause under it once (`Unavailable: tcp connect error: Connection refused
/// (os error 111)`), not tonic's bare `transport error`.
pub fn status_text(status: &tonic::Status) -> String {
    if let Some(failure) = tls::handshake_failure(status) {
        return failure;
    }
    match std::error::Error::source(status) {
        Some(source) => format!("{:?}: {}", status.code(), causes_after(status.message(), source)),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Each distinct message of `error`'s source chain once (hyper and tonic often repeat their
/// source's text in their own), joined by `: `.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    causes_after("", error)
}

fn causes_after(first: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = Some(error);
    let texts = std::iter::once(first.to_owned()).chain(std::iter::from_fn(|| {
        let cause = next?;
        next = cause.source();
        Some(cause.to_string())
    }));
    for text in texts {
        // tonic's wrapper of every transport failure says nothing of its own.
        if !text.is_empty() && text != "transport error" && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
    }
    said.join(": ")
}

/// Why no channel to the sidecar could be made (the address or its TLS settings).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChannelError(String);

/// A lazily connected channel to the sidecar's first address (`validate`, the dry run and the
/// demo ask one replica); tonic resolves its name at each connection. A running connector
/// reaches every replica ([`Endpoints`]).
pub fn channel(config: &SidecarConfig) -> Result<Channel, ChannelError> {
    let addresses = config.addresses();
    let address = addresses.first().ok_or_else(|| ChannelError("no sidecar address is configured (`address` or `addresses`)".into()))?;
    channel_to(config, address)
}

/// A lazily connected channel to `address`, one of `config`'s addresses.
pub fn channel_to(config: &SidecarConfig, address: &str) -> Result<Channel, ChannelError> {
    connect_lazily(address, None, tls_settings(config, address)?)
}

/// The TLS settings of `config`'s sidecar at `address` (`tls.rs`), `None` for `http://`.
fn tls_settings(config: &SidecarConfig, address: &str) -> Result<Option<ClientTlsConfig>, ChannelError> {
    tls::client_config(config, address).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(|p| format!("sidecar.{}: {}", p.key, p.message)).collect();
        ChannelError(format!("`{address}`: its TLS settings cannot be used: {}", problems.join("; ")))
    })
}

/// A lazily connected channel to `address`, or to `at` (one of the IPs its name resolves to,
/// as `http://10.1.2.3:50051`) with `address` kept as the requests' origin; all partitions on
/// it share its HTTP/2 connection. With `tls` (an `https://` address) the certificate is
/// checked against the name in those settings (`address`'s host or `tls.domain`), never `at`.
fn connect_lazily(address: &str, at: Option<&str>, tls: Option<ClientTlsConfig>) -> Result<Channel, ChannelError> {
    let mut endpoint = Endpoint::from_shared(at.unwrap_or(address).to_owned())
        .map_err(|e| ChannelError(format!("`{}`: {}", at.unwrap_or(address), causes(&e))))?;
    if at.is_some() {
        let origin = address.parse().map_err(|e| ChannelError(format!("`{address}`: {}", causes(&e))))?;
        endpoint = endpoint.origin(origin);
    }
    if let Some(settings) = tls {
        endpoint = endpoint
            .tls_config(settings)
            .map_err(|e| ChannelError(format!("`{address}`: its TLS settings cannot be used: {}", causes(&e))))?;
    }
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // gRPC servers (grpcio, grpc-java) by default refuse pings more often than every
        // 5 minutes on a connection without data ("too many pings" GOAWAY); hung requests are
        // caught by the per-request deadline anyway.
        .http2_keep_alive_interval(Duration::from_secs(300))
        .keep_alive_while_idle(false)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_lazy())
}
