#!/usr/bin/env python3
"""The library-loans reducer sidecar for projector-gateway, in Python (grpcio, asyncio).

The gateway reads the event log and streams each event to this server
(`projection.Projection/Project`, proto/projection.proto); the server answers each one, in the
order received, with typed SQL statements, which the gateway applies to the read model
(schema.sql) together with its checkpoint. `Describe` tells the gateway which event types to
send.

    .venv/bin/python reducer.py     # listens on $REDUCER_ADDRESS (default 127.0.0.1:50051)

Prints `listening on HOST:PORT` once ready, logs to stderr, stops on SIGTERM / SIGINT.

To add an event type: write a handler (the event -> a list of statements) and add it to
HANDLERS. Handlers must be deterministic: after a reconnect the gateway sends an event again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Callable, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated"))

try:
    from grpc import aio
    from google.protobuf import timestamp_pb2

    import projection_pb2 as pb
    import projection_pb2_grpc as pb_grpc
except ImportError as exc:  # not set up yet
    sys.exit(f"reducer.py: {exc}; run ./run.sh setup first (a venv with the stubs in generated/)")

PROJECTION = "library-loans"
# The version of the handlers' logic: change it when what they write changes (with
# `sidecar.rebuild_on_new_version: true` the gateway then rebuilds the read model).
VERSION = "1"

log = logging.getLogger("reducer")


class BadEvent(Exception):
    """The event lacks a field a handler needs: reported to the gateway, which applies the
    connector's poison policy (by default it stops and says which event)."""


# --- Reading the payload ---------------------------------------------------------------------
# The payload arrives as a google.protobuf.Struct (JSON numbers become doubles).


def text(req: pb.ProjectionRequest, name: str) -> str:
    value = req.eventPayload.fields.get(name)
    if value is None or value.WhichOneof("kind") != "string_value":
        raise BadEvent(f"payload field '{name}' is missing or not a string")
    return value.string_value


def time(req: pb.ProjectionRequest, name: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text(req, name))
    except ValueError:
        raise BadEvent(f"payload field '{name}' is not an RFC 3339 time") from None
    return stamp


# --- Typed SQL parameters and statements ------------------------------------------------------


def string_param(value: str) -> pb.SqlValue:
    return pb.SqlValue(stringValue=value)


def int_param(value: int) -> pb.SqlValue:
    return pb.SqlValue(int64Value=value)


def time_param(value: timestamp_pb2.Timestamp) -> pb.SqlValue:
    return pb.SqlValue(timestampValue=value)


def statement(sql: str, *params: pb.SqlValue) -> pb.Statement:
    """A statement with placeholders $1, $2, ... bound by the gateway's database driver."""
    return pb.Statement(sql=sql, params=params)


# --- The handlers: one per event type ----------------------------------------------------------

LEND = (
    "INSERT INTO loans (loan_id, book_id, member_id, lent_at, last_position) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loan_id) DO NOTHING"
)
RETURN = "UPDATE loans SET returned_at = $2, last_position = $3 WHERE loan_id = $1"


def book_lent(req: pb.ProjectionRequest) -> List[pb.Statement]:
    return [
        statement(
            LEND,
            string_param(text(req, "loanId")),
            string_param(text(req, "bookId")),
            string_param(text(req, "memberId")),
            time_param(time(req, "lentAt")),
            int_param(req.globalPosition),
        )
    ]


def book_returned(req: pb.ProjectionRequest) -> List[pb.Statement]:
    return [
        statement(
            RETURN,
            string_param(text(req, "loanId")),
            time_param(time(req, "returnedAt")),
            int_param(req.globalPosition),
        )
    ]


HANDLERS: Dict[str, Callable[[pb.ProjectionRequest], List[pb.Statement]]] = {
    "BookLent": book_lent,
    "BookReturned": book_returned,
}


def describe() -> pb.DescribeResponse:
    """The projection, its version, and the event types to send (the gateway sends only those)."""
    answer = pb.DescribeResponse(projection=PROJECTION, version=VERSION, eventTypes=list(HANDLERS))
    # What clears the read model when the gateway rebuilds it.
    answer.resetOperations.add().Pack(statement("DELETE FROM loans"))
    return answer


def respond(req: pb.ProjectionRequest) -> pb.ProjectionResponse:
    """The answer to one event; never raises: a failure becomes the answer's `error`."""
    answer = pb.ProjectionResponse(eventId=req.eventId)
    handler = HANDLERS.get(req.eventType)
    try:
        operations = handler(req) if handler else []
    except Exception as exc:  # BadEvent, or a bug: report it for this event
        answer.error.message = f"{req.eventType} {req.eventId} (stream {req.stream}): {exc}"
        answer.error.retryable = False
        log.warning("%s", answer.error.message)
        return answer
    if not operations:
        answer.operation.Pack(pb.Ignore())
    for i, operation in enumerate(operations):
        (answer.operation if i == 0 else answer.operations.add()).Pack(operation)
    return answer


# --- The gRPC server ---------------------------------------------------------------------------


class Projection(pb_grpc.ProjectionServicer):
    async def Project(self, request_iterator, context):
        # Send the response headers now rather than with the first answer, so the gateway sees
        # the stream open at once (its timeouts and retries then work from the first event).
        await context.send_initial_metadata(())
        async for req in request_iterator:
            yield respond(req)


class ProjectionInfo(pb_grpc.ProjectionInfoServicer):
    async def Describe(self, request, context):
        return describe()


async def serve(address: str) -> None:
    # so_reuseport 0: a port already taken is an error instead of being shared.
    server = aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ProjectionServicer_to_server(Projection(), server)
    pb_grpc.add_ProjectionInfoServicer_to_server(ProjectionInfo(), server)
    port = server.add_insecure_port(address)  # raises RuntimeError when it cannot listen
    await server.start()
    print(f"listening on {address.rpartition(':')[0]}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    # Open streams are cut after a second; the gateway sends unanswered events again.
    await server.stop(grace=1)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    address = os.environ.get("REDUCER_ADDRESS", "127.0.0.1:50051")
    try:
        asyncio.run(serve(address))
    except RuntimeError as exc:
        log.error("cannot listen on %s: %s", address, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
