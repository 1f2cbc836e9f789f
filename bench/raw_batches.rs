//! What the raw scenarios of the targets (`mongo.rs`, `elastic.rs`, `redis.rs`) share: the
//! whole SQLite log read before the clock starts, and the reduced events cut into per-writer
//! batches of `max_ops` operations, as the writers cut them under load.

use projector_gateway::{
    config::SqliteSourceConfig,
    event::{Event, Position},
    sinks::{Batch, BatchItem, EventRef},
    sources::{EventSource, sqlite::{EventLog, SqliteSource}},
};

/// Every event of the log, in order, and the log's head.
pub async fn read_log(source: &SqliteSourceConfig) -> anyhow::Result<(Vec<Event>, Position)> {
    let head = EventLog::open(&source.path)?.head()?;
    let mut reader = SqliteSource::open(source, 0)?;
    let mut events = Vec::with_capacity(head as usize);
    while events.last().map_or(0, |e: &Event| e.position) < head {
        events.extend(reader.next_batch().await?.events);
    }
    Ok((events, head))
}

/// The batches of each writer, and what they hold.
pub struct Cut<Op> {
    pub batches: Vec<Vec<Batch<Op>>>,
    pub ops: u64,
    pub events: u64,
}

/// Cuts `reduced` (each event with its operations, in log order) into batches per writer
/// (`partition % writers`), a batch closing once it holds `max_ops` operations.
pub fn cut<Op>(reduced: Vec<(EventRef, Vec<Op>)>, writers: usize, count: u32, max_ops: usize) -> Cut<Op> {
    let mut pending: Vec<Vec<BatchItem<Op>>> = (0..writers).map(|_| Vec::new()).collect();
    let mut pending_ops = vec![0usize; writers];
    let mut cut = Cut { batches: (0..writers).map(|_| Vec::new()).collect(), ops: 0, events: 0 };
    for (event, ops) in reduced {
        let w = event.partition as usize % writers;
        cut.ops += ops.len() as u64;
        cut.events += 1;
        pending_ops[w] += ops.len();
        pending[w].push(BatchItem::Apply { event, ops });
        if pending_ops[w] >= max_ops {
            cut.batches[w].push(Batch::new(std::mem::take(&mut pending[w]), count));
            pending_ops[w] = 0;
        }
    }
    for (w, items) in pending.into_iter().enumerate() {
        if !items.is_empty() {
            cut.batches[w].push(Batch::new(items, count));
        }
    }
    cut
}
