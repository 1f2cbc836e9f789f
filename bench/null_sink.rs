//! A sink that decodes operations like the SQL sinks do and applies nothing: with it the
//! pipeline measures everything but the database (source, routing, gRPC, the sidecar, decoding),
//! which is the "raw sidecar rate" half of the ceiling.

use std::sync::Arc;

use projector_gateway::{
    checkpoint::CheckpointRow,
    sinks::{
        ApplyError, Batch, DecodeError, Sink, SinkError, SinkWriter,
        sql::{SqlOp, decode_sql_op},
    },
};
use prost_types::Any;

pub struct NullSink;

pub struct NullWriter;

impl Sink for NullSink {
    type Op = SqlOp;
    type Writer = NullWriter;

    fn name(&self) -> &'static str {
        "null"
    }

    fn decode(&self, operation: &Any) -> Result<Option<SqlOp>, DecodeError> {
        decode_sql_op(operation, true, "null")
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        Ok(Vec::new())
    }

    async fn delete_checkpoints(&self, _: u32) -> Result<(), SinkError> {
        Ok(())
    }

    /// Accepts the sidecar's `Describe` version (there is no read model to rebuild).
    async fn record_projection_version(&self, _: &str, _: &str, _: Option<Vec<SqlOp>>) -> Result<(), SinkError> {
        Ok(())
    }

    fn writer_count(&self) -> usize {
        1
    }

    async fn open_writer(&self) -> Result<NullWriter, SinkError> {
        Ok(NullWriter)
    }
}

impl SinkWriter for NullWriter {
    type Op = SqlOp;

    async fn apply(&mut self, batch: Arc<Batch<SqlOp>>) -> Result<(), ApplyError> {
        std::hint::black_box(&batch.items);
        Ok(())
    }
}
