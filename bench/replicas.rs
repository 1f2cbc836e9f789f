//! Latency-bound replicas of the example reducer, for the `scale-sidecars-<N>` scenarios: each
//! is its own gRPC server on its own loopback port (a [`Sidecar`]) whose handling is serialised
//! on one OS thread, as a single-threaded sidecar that calls a service for every event is. That
//! thread takes the requests of every stream of its replica in arrival order, waits
//! [`SERVICE_CALL`] (`std::thread::sleep`: tokio's timer has a 1 ms granularity), then answers
//! with `bookings_reducer::reduce`, so one replica tops out near 1 / 0.5 ms = 2k events/s
//! whatever the gateway does. Streams are pipelined: a stream hands every request to the
//! thread as it arrives and answers them in order, so a replica is never idle while one of its
//! streams has requests in flight.

use std::{
    collections::BTreeSet,
    pin::Pin,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use bookings_reducer::{
    BookingsReducer,
    proto::{
        ProjectionRequest, ProjectionResponse, projection_info_server::ProjectionInfoServer,
        projection_server::{Projection, ProjectionServer},
    },
};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::scenarios::Sidecar;

/// What a replica waits for each event: the call to another service.
pub const SERVICE_CALL: Duration = Duration::from_micros(500);

/// Requests of one stream handed to the replica's thread and not answered yet, at most (the
/// gateway's window, 256 by default, is the real bound).
const IN_FLIGHT_PER_STREAM: usize = 4096;

/// What one replica did during a scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaLoad {
    /// Partitions whose events it answered.
    pub partitions: u32,
    /// Events it answered.
    pub events: u64,
    /// Time its thread spent on events (waiting and reducing), not waiting for requests.
    pub busy_seconds: f64,
}

/// What the replica's thread records as it goes.
#[derive(Default)]
struct Tally {
    partitions: BTreeSet<u32>,
    events: u64,
    busy: Duration,
}

/// One event for the replica's thread, and where its answer goes.
struct Job {
    request: ProjectionRequest,
    answer: oneshot::Sender<ProjectionResponse>,
}

/// `--replicas N` replicas, each on its own port with its own thread.
pub struct Replicas {
    sidecars: Vec<Sidecar>,
    tallies: Vec<Arc<Mutex<Tally>>>,
}

impl Replicas {
    pub async fn start(count: usize) -> anyhow::Result<Self> {
        let (mut sidecars, mut tallies) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for index in 0..count {
            let tally = Arc::new(Mutex::new(Tally::default()));
            let jobs = spawn_thread(index, tally.clone())?;
            sidecars.push(Sidecar::serve(move |listener, shutdown| tokio::spawn(serve(listener, jobs, shutdown))).await?);
            tallies.push(tally);
        }
        Ok(Self { sidecars, tallies })
    }

    /// Their gRPC addresses, for `sidecar.addresses`.
    pub fn addresses(&self) -> Vec<String> {
        self.sidecars.iter().map(|s| s.address.clone()).collect()
    }

    /// What each replica did so far.
    pub fn loads(&self) -> Vec<ReplicaLoad> {
        self.tallies
            .iter()
            .map(|t| {
                let t = t.lock();
                ReplicaLoad { partitions: t.partitions.len() as u32, events: t.events, busy_seconds: t.busy.as_secs_f64() }
            })
            .collect()
    }

    /// Stops the servers; each thread ends once its server's last stream is gone.
    pub async fn stop(self) {
        for sidecar in self.sidecars {
            sidecar.stop().await;
        }
    }
}

/// The replica's one thread: every request of every stream of the replica, one at a time.
fn spawn_thread(index: usize, tally: Arc<Mutex<Tally>>) -> anyhow::Result<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new().name(format!("replica-{index}")).spawn(move || {
        while let Ok(Job { request, answer }) = queue.recv() {
            let began = Instant::now();
            std::thread::sleep(SERVICE_CALL);
            let response = bookings_reducer::reduce(&request);
            let _ = answer.send(response);
            let mut t = tally.lock();
            t.partitions.insert(request.partition);
            t.events += 1;
            t.busy += began.elapsed();
        }
    })?;
    Ok(jobs)
}

/// The `Projection` service of one replica: its streams hand their requests to its thread.
#[derive(Clone)]
struct LatencyBound {
    jobs: mpsc::Sender<Job>,
}

type Responses = Pin<Box<dyn Stream<Item = Result<ProjectionResponse, Status>> + Send>>;

// gRPC handlers answer with `tonic::Status`, as tonic's generated traits do.
#[allow(clippy::result_large_err)]
#[tonic::async_trait]
impl Projection for LatencyBound {
    type ProjectStream = Responses;

    async fn project(&self, request: Request<Streaming<ProjectionRequest>>) -> Result<Response<Responses>, Status> {
        let jobs = self.jobs.clone();
        let gone = || Status::unavailable("the replica's thread has stopped");
        let responses = request
            .into_inner()
            .map(move |received| {
                // Handed to the thread now, answered in order by `buffered`.
                let answer = received.and_then(|request| {
                    let (answer, response) = oneshot::channel();
                    jobs.send(Job { request, answer }).map_err(|_| gone())?;
                    Ok(response)
                });
                async move { answer?.await.map_err(|_| gone()) }
            })
            .buffered(IN_FLIGHT_PER_STREAM);
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Serves one replica on `listener` until `shutdown`, with the example reducer's `Describe`
/// and the server settings of `bookings_reducer::serve`.
async fn serve(
    listener: TcpListener,
    jobs: mpsc::Sender<Job>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(ProjectionServer::new(LatencyBound { jobs }))
        .add_service(ProjectionInfoServer::new(BookingsReducer::default()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
