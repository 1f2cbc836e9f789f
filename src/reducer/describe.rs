//! The optional `Describe` handshake (`projection.ProjectionInfo/Describe`): once, when a
//! connector starts, the sidecar may declare the event types it handles (they narrow the
//! connector's filter, so unwanted events never cross the wire), and its projection's name,
//! version and reset operations (a new version can rebuild the read model). A sidecar that
//! does not serve it answers UNIMPLEMENTED and gets every event, as before.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tracing::{info, warn};

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

/// Asks the sidecar to describe itself, waiting (with backoff) while it cannot be reached.
pub async fn describe(channel: Channel, connector: &str, stop: &CancellationToken) -> Result<Described, String> {
    let mut client = ProjectionInfoClient::new(channel);
    let mut backoff = Backoff::default();
    loop {
        let mut request = tonic::Request::new(DescribeRequest { connector: connector.to_string() });
        request.set_timeout(CALL_TIMEOUT);
        let status = tokio::select! {
            _ = stop.cancelled() => return Ok(Described::Stopped),
            answer = client.describe(request) => match answer {
                Ok(response) => {
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
                let delay = backoff.next_delay();
                warn!(connector, "the sidecar cannot be reached yet ({:?}: {}); asking again in {delay:?}", status.code(), status.message());
                tokio::select! {
                    _ = stop.cancelled() => return Ok(Described::Stopped),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            code => return Err(format!("the sidecar's Describe failed ({code:?}: {})", status.message())),
        }
    }
}
