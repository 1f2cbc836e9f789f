#!/usr/bin/env python3
"""A minimal load client for a reducer sidecar, in Python (grpcio asyncio), for
bench/sidecars.sh: it feeds the sidecar the way the gateway does, with nothing else around it,
so the sidecar's own ceiling can be compared with its rate through the gateway.

    python_client.py --address 127.0.0.1:50051 --events events.jsonl [--partitions 8] [--window 256]

- Reads the requests exported by export_log.py (the gateway's request fields, partition
  included) and encodes them all before the clock starts.
- Calls Describe like the gateway: when the sidecar declares event types, only those are sent
  (UNIMPLEMENTED: every event).
- Opens one bidirectional `Project` stream per partition (8 by default, as the gateway) and
  keeps up to `--window` requests unanswered on each (256, the gateway's default), sending the
  next as each response arrives; checks that every response answers the oldest request in
  flight and carries no error.
- The clock runs from the first request written to the last response read. Prints per-second
  response counts on stderr and, last on stdout, `RESULT {json}` with `sent`, `log_events`,
  `started_at` (Unix time), `seconds`, `sent_per_s`, `log_events_per_s` and `per_second`.

Runs with the Python example's venv (scripts/python-sidecar.sh), which has grpcio and the stubs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "sidecar-examples", "python", "generated"))

import grpc  # noqa: E402
from grpc import aio  # noqa: E402

import projection_pb2 as pb  # noqa: E402


def load(path: str, partitions: int):
    """Every exported event as (partition, eventType, ProjectionRequest)."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            req = pb.ProjectionRequest(
                eventType=e["eventType"],
                eventId=e["eventId"],
                stream=e["stream"],
                metadata=e["metadata"],
                globalPosition=e["globalPosition"],
                streamRevision=e["streamRevision"],
                partition=e["partition"] % partitions,
                contentType="application/json",
            )
            req.eventPayload.update(json.loads(e["data"]))
            created_us = e["createdUs"]
            req.created.seconds, req.created.nanos = divmod(created_us, 1_000_000)
            req.created.nanos *= 1000
            events.append((e["partition"] % partitions, e["eventType"], req))
    return events


async def described_types(channel) -> set | None:
    describe = channel.unary_unary(
        "/projection.ProjectionInfo/Describe",
        request_serializer=pb.DescribeRequest.SerializeToString,
        response_deserializer=pb.DescribeResponse.FromString,
    )
    try:
        answer = await describe(pb.DescribeRequest(connector="bench"), timeout=30)
    except aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    return set(answer.eventTypes) or None


async def feed(channel, requests, window: int, answered: collections.Counter, started: float) -> float:
    """Sends `requests` ([(eventId, bytes)]) on one stream with `window` in flight; returns the
    time of the last response."""
    project = channel.stream_stream(
        "/projection.Projection/Project",
        request_serializer=None,  # already encoded
        response_deserializer=pb.ProjectionResponse.FromString,
    )
    call = project()
    credits = asyncio.Semaphore(window)

    async def write() -> None:
        for _, data in requests:
            await credits.acquire()
            await call.write(data)

    writer = asyncio.ensure_future(write())
    last = started
    for event_id, _ in requests:
        response = await call.read()
        if response is aio.EOF:
            raise SystemExit(f"the sidecar ended a stream after {answered.total()} responses")
        if response.eventId != event_id:
            raise SystemExit(f"response for {response.eventId!r} where {event_id!r} was the oldest in flight")
        if response.HasField("error"):
            raise SystemExit(f"the sidecar reported an error: {response.error.message}")
        last = time.perf_counter()
        answered[int(last - started)] += 1
        credits.release()
    await writer
    await call.done_writing()
    call.cancel()
    return last


async def run(args) -> dict:
    events = load(args.events, args.partitions)
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    # One channel, so one HTTP/2 connection, for every stream: as the gateway does.
    channel = aio.insecure_channel(args.address, options=options)
    try:
        types = await described_types(channel)
        per_partition = [[] for _ in range(args.partitions)]
        for partition, event_type, req in events:
            if types is None or event_type in types:
                per_partition[partition].append((req.eventId, req.SerializeToString()))
        sent = sum(len(p) for p in per_partition)
        await channel.channel_ready()
        answered: collections.Counter = collections.Counter()
        started_at = time.time()
        started = time.perf_counter()
        lasts = await asyncio.gather(
            *(feed(channel, reqs, args.window, answered, started) for reqs in per_partition if reqs)
        )
        seconds = max(lasts) - started
    finally:
        await channel.close()
    per_second = [answered[s] for s in range(int(seconds) + 1)]
    return {
        "sent": sent,
        "log_events": len(events),
        "started_at": started_at,
        "seconds": round(seconds, 4),
        "sent_per_s": round(sent / seconds),
        "log_events_per_s": round(len(events) / seconds),
        "per_second": per_second,
        "filtered_by_describe": types is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="HOST:PORT of the sidecar")
    parser.add_argument("--events", required=True, help="JSON lines written by export_log.py")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    sys.stderr.write(f"python_client: responses per second: {result['per_second']}\n")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
