//! Spreads streams over N partitions. Each partition is processed in order on its own gRPC
//! stream and its own checkpoint; different partitions run in parallel. The hash is part of the
//! stored state (checkpoints are per partition), so it is a fixed, documented function
//! (64-bit FNV-1a of the key's UTF-8 bytes, modulo N) that never changes between versions.

use crate::config::{PartitionKey, PartitioningConfig};

/// Maps a stream name to its partition.
#[derive(Debug, Clone, Copy)]
pub struct Partitioner {
    count: u32,
    key: PartitionKey,
}

impl Partitioner {
    pub fn new(config: &PartitioningConfig) -> Self {
        let count = if config.key == PartitionKey::None { 1 } else { config.count.max(1) };
        Self { count, key: config.key }
    }

    /// Number of partitions.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn partition_of(&self, stream: &str) -> u32 {
        partition_of(self.key, stream, self.count)
    }
}

/// The partition of `stream` among `count` partitions keyed by `key`.
pub fn partition_of(key: PartitionKey, stream: &str, count: u32) -> u32 {
    let key = match key {
        PartitionKey::None => return 0,
        PartitionKey::Stream => stream,
        PartitionKey::Category => stream.split_once('-').map_or(stream, |(category, _)| category),
    };
    (fnv1a(key.as_bytes()) % u64::from(count)) as u32
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_documented_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn spreads_streams_and_keeps_categories_together() {
        let p = Partitioner::new(&PartitioningConfig { count: 8, key: PartitionKey::Stream });
        let used: std::collections::HashSet<u32> =
            (0..1000).map(|i| p.partition_of(&format!("booking-{i}"))).collect();
        assert_eq!(used.len(), 8);
        let c = Partitioner::new(&PartitioningConfig { count: 8, key: PartitionKey::Category });
        assert_eq!(c.partition_of("booking-1"), c.partition_of("booking-2"));
        let none = Partitioner::new(&PartitioningConfig { count: 8, key: PartitionKey::None });
        assert_eq!(none.count(), 1);
    }
}
