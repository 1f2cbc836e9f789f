//! A KurrentDB test server: no KurrentDB or EventStoreDB server can be installed from the
//! package registries these machines reach, so the gateway's KurrentDB source is tested
//! against this in-process server, which implements the real gRPC `Streams` service from the
//! official protos (`protos/`, compiled by `build.rs`). The real `kurrentdb` client crate talks
//! to it over loopback, exactly as it talks to a server.
//!
//! What it implements: `Read` of `$all` and of one stream (forwards and backwards, from the
//! start, the end or a position, with a count) and `$all` subscriptions with server-side
//! filters (event type or stream name, by prefix or regex), checkpoints every `max` events
//! read, confirmation and caught-up messages; `Append` with expected revisions; optional
//! credentials (`Unauthenticated` otherwise). Other services (`ServerFeatures`, `Gossip`) are
//! answered `Unimplemented`, which the client accepts. Test controls: append in-process,
//! drop every subscription with a given status (e.g. "consumer too slow"), count
//! subscriptions.
//!
//! `log.rs` (included by the KurrentDB tests only) puts this server and a real one
//! (`KURRENTDB_URL`) behind one `TestLog`, so a test case runs against either.

mod server;

#[allow(dead_code, clippy::all)]
pub mod pb {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

#[allow(unused_imports)]
pub use server::{StoredEvent, TestKurrentDb};

/// The status a KurrentDB server ends a live subscription with when its consumer does not
/// keep up (servers before 23.10).
pub fn consumer_too_slow() -> tonic::Status {
    tonic::Status::aborted("Consumer too slow to handle event while live. Client resubscription required.")
}
