//! The Rust example sidecar (`sidecar-examples/rust`, the reference reducer) as its own process,
//! built by `scripts/rust-sidecar.sh`. With `REDUCER_TARGET=mongo` the gateway process projects
//! a SQLite event log through it into MongoDB (SecantusDB), catches up, follows live appends,
//! and the documents equal the reference read model computed straight from the log; killed
//! with SIGKILL mid-catch-up and started again, the gateway applies nothing twice (the guest
//! counters would show it). With `REDUCER_TARGET=elastic` the same into Elasticsearch: the
//! documents are exactly those of `bookings_reducer::reduce_elastic` applied in log order, also
//! after a SIGKILL and the replay that follows. The gateway's own `example-sidecar` command
//! serves the same reducer for the target `REDUCER_TARGET` names. Its SQL read model is covered
//! by the tests that serve it in-process (`tests/it/sqlite_pipeline.rs`, `tests/it/crash_recovery.rs`,
//! ...), and its unit tests by `cargo test -p bookings-reducer`.

use std::{process::Command, time::Duration};

use bookings_reducer::Target;
use projector_gateway::proto as gw;
use crate::support::{
    example_sidecars::{self, LogsOnFailure, RUST},
    processes::{self, Process},
};

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_rust_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&RUST, 71).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_resumes_the_rust_reducer_s_mongodb_read_model_exactly_once() {
    example_sidecars::mongo_gateway_killed_mid_catch_up_resumes_exactly_once(&RUST, 72).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_rust_reducer_into_elasticsearch() {
    example_sidecars::elastic_catch_up_and_live(&RUST, 73).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_replays_into_the_rust_reducer_s_elasticsearch_documents_unchanged() {
    example_sidecars::elastic_gateway_killed_mid_catch_up_converges(&RUST, 74).await;
}

#[test]
fn the_rust_reducer_refuses_an_unknown_target_with_exit_code_2() {
    example_sidecars::refuses_an_unknown_target(&RUST);
}

/// `projector-gateway example-sidecar` with `REDUCER_TARGET` set.
fn gateway_example_sidecar(target: &str) -> Command {
    let mut command = Command::new(processes::gateway_bin());
    command.args(["example-sidecar", "--address", "127.0.0.1:0"]).env("REDUCER_TARGET", target);
    command
}

/// For each target the gateway's bundled sidecar describes itself as the reference does for that
/// target (the reset operations differ: SQL statements, MongoDB DeleteMany, none for
/// Elasticsearch) and answers an event with that target's operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_s_example_sidecar_serves_the_target_reducer_target_names() {
    let dir = tempfile::tempdir().unwrap();
    let event = bookings_reducer::proto::ProjectionRequest {
        event_type: "RoomBooked".into(),
        event_id: "e-1".into(),
        stream: "booking-1".into(),
        global_position: 7,
        event_payload: Some(
            projector_gateway::payload::json_to_struct(
                br#"{"bookingId": "booking-1", "guestId": "guest-1", "roomId": "room-1", "checkIn": "2026-12-01", "checkOut": "2026-12-02", "priceCents": 9900}"#,
            )
            .unwrap(),
        ),
        ..Default::default()
    };
    for (name, target) in [("sql", Target::Sql), ("mongo", Target::Mongo), ("elastic", Target::Elastic)] {
        let sidecar = Process::spawn(gateway_example_sidecar(name), dir.path().join(format!("{name}.log")), true);
        let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
        let channel = tonic::transport::Endpoint::from_shared(sidecar.address.clone().expect("sidecar address"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect to the sidecar");
        let described = gw::projection_info_client::ProjectionInfoClient::new(channel.clone())
            .describe(gw::DescribeRequest { connector: "bookings".into() })
            .await
            .expect("Describe")
            .into_inner();
        let expected: gw::DescribeResponse = convert(&target.description());
        assert_eq!(described, expected, "Describe with REDUCER_TARGET={name}");
        let request: gw::ProjectionRequest = convert(&event);
        let mut responses = gw::projection_client::ProjectionClient::new(channel)
            .project(tokio_stream::iter([request]))
            .await
            .expect("Project")
            .into_inner();
        let answered = tokio::time::timeout(Duration::from_secs(30), responses.message()).await.expect("an answer in time");
        let expected: gw::ProjectionResponse = convert(&target.reduce(&event));
        assert_eq!(answered.expect("a response"), Some(expected), "the answer with REDUCER_TARGET={name}");
    }
}

#[test]
fn the_gateway_s_example_sidecar_refuses_an_unknown_target() {
    let out = gateway_example_sidecar("cassandra").output().expect("run projector-gateway example-sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing listens: {}", String::from_utf8_lossy(&out.stdout));
    for needed in ["cassandra", "REDUCER_TARGET", "sql", "mongo", "elastic"] {
        assert!(stderr.contains(needed), "the error names {needed}: {stderr}");
    }
}

/// The same message in another crate's generated types (both come from `proto/`).
fn convert<A: prost::Message, B: prost::Message + Default>(message: &A) -> B {
    B::decode(message.encode_to_vec().as_slice()).expect("the same proto")
}

/// A stream a gateway holds open never ends by itself, so a stop signal must not wait for it
/// for ever: the example sidecars (the gateway's bundled one and the standalone crate) stop
/// within their 5 s drain after one SIGTERM, and at once after a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_sidecars_stop_despite_a_stream_held_open() {
    let dir = tempfile::tempdir().unwrap();
    fn bundled() -> Command {
        gateway_example_sidecar("sql")
    }
    fn standalone() -> Command {
        let mut command = RUST.command();
        command.args(["--address", "127.0.0.1:0"]);
        command
    }
    /// What is checked: how the sidecar is started, and whether a second signal follows.
    type Case = (&'static str, fn() -> Command, bool);
    let cases: [Case; 4] = [
        ("bundled, one signal", bundled, false),
        ("bundled, two signals", bundled, true),
        ("standalone, one signal", standalone, false),
        ("standalone, two signals", standalone, true),
    ];
    for (n, (case, command, twice)) in cases.into_iter().enumerate() {
        let mut sidecar = Process::spawn(command(), dir.path().join(format!("{n}.log")), true);
        let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
        let channel = tonic::transport::Endpoint::from_shared(sidecar.address.clone().expect("sidecar address"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the sidecar");
        // One request answered, then the stream stays open, as a gateway's does.
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        requests.send(gw::ProjectionRequest { event_type: "Unknown".into(), event_id: "e-1".into(), ..Default::default() }).await.unwrap();
        let mut responses = gw::projection_client::ProjectionClient::new(channel)
            .project(tokio_stream::wrappers::ReceiverStream::new(outgoing))
            .await
            .expect("Project")
            .into_inner();
        let answered = tokio::time::timeout(Duration::from_secs(30), responses.message()).await.expect("an answer in time");
        assert!(answered.expect("a response").is_some(), "{case}");

        let started = std::time::Instant::now();
        sidecar.signal(processes::SIGTERM);
        if twice {
            // A signal sent while the same one is still pending merges with it: wait until
            // the first was taken, as a person's second Ctrl-C would.
            let log = sidecar.stderr_path.clone();
            crate::support::fixtures::poll_until(&format!("{case}: the first signal taken"), Duration::from_secs(5), || {
                std::fs::read_to_string(&log).unwrap_or_default().contains("signal again").then_some(())
            })
            .await;
            sidecar.signal(processes::SIGTERM);
        }
        let status = sidecar.wait_exit(Duration::from_secs(20));
        let took = started.elapsed();
        assert!(status.success(), "{case}: {status:?}\n{}", sidecar.stderr());
        let bound = if twice { Duration::from_secs(3) } else { Duration::from_secs(10) };
        assert!(took < bound, "{case}: stopped after {took:?}");
        drop(requests);
    }
}
