#!/usr/bin/env python3
"""Writes the events of a SQLite event log as JSON lines, each with the fields the gateway puts
in its ProjectionRequest, so the benchmark's load clients (python_client.py,
typescript_client.js) send the sidecar exactly what the gateway would:

    {"eventType", "eventId", "stream", "data" (the payload's JSON text), "metadata" (flattened
     to strings as the gateway does), "globalPosition", "streamRevision", "createdUs",
     "partition"}

`partition` is the gateway's: 64-bit FNV-1a of the stream name's UTF-8 bytes modulo the
partition count (src/partition.rs), so each client stream carries the events, in log order,
that the gateway's stream of that partition carries.

    python3 export_log.py --log events.db --out events.jsonl [--partitions 8]

Standard library only.
"""

import argparse
import json
import sqlite3

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def flatten_metadata(text):
    """The gateway's metadata map: string values as they are, other values as JSON text."""
    if text is None:
        return {}
    value = json.loads(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {"metadata": text}
    return {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in value.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    partition_of = {}
    conn = sqlite3.connect(f"file:{args.log}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT position, event_id, stream, revision, event_type, data, metadata, created_us FROM events ORDER BY position"
    )
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for position, event_id, stream, revision, event_type, data, metadata, created_us in rows:
            partition = partition_of.get(stream)
            if partition is None:
                partition = partition_of[stream] = fnv1a(stream.encode("utf-8")) % args.partitions
            line = {
                "eventType": event_type,
                "eventId": event_id,
                "stream": stream,
                "data": data,
                "metadata": flatten_metadata(metadata),
                "globalPosition": position,
                "streamRevision": revision,
                "createdUs": created_us,
                "partition": partition,
            }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            count += 1
    print(count)


if __name__ == "__main__":
    main()
