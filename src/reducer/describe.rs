//! The optional `Describe` handshake (`projection.ProjectionInfo/Describe`): once, when a
//! connector starts, the sidecar may declare the event types it handles (they narrow the
//! connector's filter, so unwanted events never cross the wire), and its projection's name,
//! version and reset operations (a new version can rebuild the read model). A sidecar that
//! does not serve it answers UNIMPLEMENTED and gets every event, as before.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tracing::{debug, info, warn};

use super::EndpointView;
use crate::{
    backoff::Backoff,
    proto::{DescribeRequest, DescribeResponse, projection_info_client::ProjectionInfoClient},
};

/// How long one Describe call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What came of asking the sidecar to describe itself.
#[derive(Debug)]
pub enum Described {
    Yes(DescribeResponse),
    /// The sidecar does not serve Describe.
    NotSupported,
    /// The connector was stopped while waiting for the sidecar.
    Stopped,
}

/// Why the sidecar did not describe itself.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// It answered `Describe` with an error status (other than UNIMPLEMENTED).
    #[error("the sidecar's Describe failed ({code:?}: {message})")]
    Failed { code: Code, message: String },
    /// It could not be reached (`describe_once` does not wait).
    #[error("the sidecar at {address} cannot be reached ({reason})")]
    Unreachable { address: String, reason: String },
    /// It was reached, and answered `Describe` with an error status (`describe_once`).
    #[error("the sidecar at {address} answered, but its Describe failed ({code:?}: {message})")]
    Refused { address: String, code: Code, message: String },
}

/// Asks the sidecar to describe itself, waiting (with backoff) while no endpoint of it can be
/// reached. Any replica may answer: a failing one is left for the next live one at once.
pub async fn describe(mut endpoints: EndpointView, connector: &str, stop: &CancellationToken) -> Result<Described, DescribeError> {
    let mut backoff = Backoff::default();
    // Waiting here is an outage of the sidecar like one mid-run: the connector shows
    // `waiting_for_sidecar`, and the wait costs one warning.
    let outage = &crate::telemetry::for_connector(connector).sidecar_outage;
    let mut attempt = 0u32;
    loop {
        let endpoint = endpoints.current().in_turn(attempt).clone();
        attempt = attempt.wrapping_add(1);
        let address = endpoint.to_string();
        let address = address.as_str();
        let mut client = ProjectionInfoClient::new(endpoint.channel());
        let mut request = tonic::Request::new(DescribeRequest { connector: connector.to_string() });
        request.set_timeout(CALL_TIMEOUT);
        let asked_at = std::time::Instant::now();
        let status = tokio::select! {
            _ = stop.cancelled() => return Ok(Described::Stopped),
            answer = client.describe(request) => match answer {
                Ok(response) => {
                    endpoints.serving(&endpoint);
                    if let Some((lasted, repeats)) = outage.succeeded(asked_at) {
                        info!(connector, address, "the sidecar answers after {lasted:.1?} ({repeats} more failed attempt(s))");
                    }
                    let response = response.into_inner();
                    info!(
                        connector,
                        projection = %response.projection,
                        version = %response.version,
                        event_types = response.event_types.len(),
                        "the sidecar described itself"
                    );
                    return Ok(Described::Yes(response));
                }
                Err(status) => status,
            },
        };
        match status.code() {
            Code::Unimplemented => return Ok(Described::NotSupported),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                let reason = super::status_text(&status);
                if endpoints.failed(&endpoint, &reason) {
                    continue;
                }
                let delay = backoff.next_delay();
                if outage.failed(&reason) {
                    warn!(
                        connector,
                        address,
                        "the sidecar at {address} cannot be reached yet ({reason}); asking again with backoff (state waiting_for_sidecar); \
                         repeats are logged at debug level"
                    );
                } else {
                    debug!(connector, address, "the sidecar at {address} cannot be reached yet ({reason}); asking again in {delay:?}");
                }
                tokio::select! {
                    _ = stop.cancelled() => return Ok(Described::Stopped),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            code => return Err(DescribeError::Failed { code, message: status.message().to_owned() }),
        }
    }
}

/// Asks the sidecar at `address` to describe itself once, without waiting for it (`validate
/// --connect`, the demo): `Err` says why it could not be reached or why `Describe` failed.
pub async fn describe_once(channel: Channel, connector: &str, address: &str) -> Result<Described, DescribeError> {
    let mut client = ProjectionInfoClient::new(channel);
    let mut request = tonic::Request::new(DescribeRequest { connector: connector.to_string() });
    request.set_timeout(CALL_TIMEOUT);
    match client.describe(request).await {
        Ok(response) => Ok(Described::Yes(response.into_inner())),
        Err(status) => match status.code() {
            Code::Unimplemented => Ok(Described::NotSupported),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                Err(DescribeError::Unreachable { address: address.to_owned(), reason: super::status_text(&status) })
            }
            code => Err(DescribeError::Refused { address: address.to_owned(), code, message: status.message().to_owned() }),
        },
    }
}
