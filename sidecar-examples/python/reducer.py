#!/usr/bin/env python3
"""The bookings reducer sidecar for projector-gateway, in Python (grpcio, asyncio server).

Implements `projection.Projection/Project` (proto/projection.proto) exactly as
sidecar-examples/BOOKINGS.md describes: each event of a stream is answered, in order, with
one ProjectionResponse carrying typed SQL statements (`projection.Statement`), MongoDB upserts
(`projection.UpdateOne`, with REDUCER_TARGET=mongo), Elasticsearch document operations
(`projection.Index` / `projection.Update`, with REDUCER_TARGET=elastic) or `Ignore`. It also
serves `projection.ProjectionInfo/Describe`.

    python reducer.py --address 127.0.0.1:50051

Prints `listening on HOST:PORT` on stdout once ready (port 0 picks a free port and the real
one is printed), logs to stderr, and stops gracefully (exit 0) on SIGTERM / SIGINT.
Environment: REDUCER_TARGET=sql|mongo|elastic (default sql), REDUCER_LOG_LEVEL=INFO.

To write your own reducer, keep everything below and replace the `reduce_*` functions and the
tables of TARGETS: a reducer function gets the request and a Payload and returns a list of
operation messages (the first goes to `operation`, the rest to `operations`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
from typing import Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "generated"))

try:
    import grpc
    from grpc import aio
    from google.protobuf import any_pb2
    from google.protobuf.message import Message

    import projection_pb2 as pb
    import projection_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - setup problem, explained to the operator
    sys.stderr.write(
        f"reducer.py: cannot import the gRPC stubs or grpcio ({exc}).\n"
        "Set up with scripts/python-sidecar.sh (creates a venv, installs requirements.txt and\n"
        "runs generate.sh), then run reducer.py with that venv's python.\n"
    )
    sys.exit(1)

log = logging.getLogger("reducer")

DEFAULT_ADDRESS = "127.0.0.1:50051"


# ---------------------------------------------------------------------------------------------
# Payload access
# ---------------------------------------------------------------------------------------------


class PayloadError(Exception):
    """The payload lacks a field the reducer needs, or the field has the wrong type."""


class Payload:
    """Typed access to an event's payload, from the Struct (`eventPayload`) or, when the gateway
    sends the payload only as raw JSON bytes (`payloadJson`), from the parsed JSON."""

    __slots__ = ("_struct", "_json")

    def __init__(self, request: "pb.ProjectionRequest") -> None:
        self._struct = None
        self._json: Optional[dict] = None
        fields = request.eventPayload.fields
        if len(fields):
            self._struct = fields
        elif request.payloadJson:
            try:
                parsed = json.loads(request.payloadJson)
            except ValueError as exc:
                raise PayloadError(f"payloadJson is not valid JSON ({exc})") from None
            if not isinstance(parsed, dict):
                raise PayloadError("payloadJson is not a JSON object")
            self._json = parsed
        else:
            self._json = {}

    def text(self, name: str) -> str:
        """A string field (required)."""
        if self._struct is not None:
            value = self._struct.get(name)
            if value is not None:
                kind = value.WhichOneof("kind")
                if kind == "string_value":
                    return value.string_value
                if kind is not None and kind != "null_value":
                    raise PayloadError(f"payload field '{name}' is not a string")
        else:
            value = self._json.get(name)
            if isinstance(value, str):
                return value
            if value is not None:
                raise PayloadError(f"payload field '{name}' is not a string")
        raise PayloadError(f"payload field '{name}' is missing")

    def integer(self, name: str) -> int:
        """An integer field (required). JSON numbers arrive in the Struct as doubles: a whole
        double is converted to int, anything else is an error."""
        if self._struct is not None:
            value = self._struct.get(name)
            if value is not None:
                kind = value.WhichOneof("kind")
                if kind == "number_value":
                    return _whole(name, value.number_value)
                if kind is not None and kind != "null_value":
                    raise PayloadError(f"payload field '{name}' is not a number")
        else:
            value = self._json.get(name)
            if isinstance(value, bool):
                raise PayloadError(f"payload field '{name}' is not a number")
            if isinstance(value, int):
                return value
            if isinstance(value, float):
                return _whole(name, value)
            if value is not None:
                raise PayloadError(f"payload field '{name}' is not a number")
        raise PayloadError(f"payload field '{name}' is missing")


def _whole(name: str, number: float) -> int:
    if not math.isfinite(number) or number != math.floor(number):
        raise PayloadError(f"payload field '{name}' is not a whole number ({number!r})")
    return int(number)


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------


def text(value: str) -> "pb.SqlValue":
    return pb.SqlValue(stringValue=value)


def int64(value: int) -> "pb.SqlValue":
    return pb.SqlValue(int64Value=value)


def statement(sql: str, *params: "pb.SqlValue") -> "pb.Statement":
    return pb.Statement(sql=sql, params=params)


def update_one(collection: str, filter: dict, update: dict, integer_fields: Sequence[str]) -> "pb.UpdateOne":
    """An UpdateOne (an upsert in the gateway) in `collection`. Numbers in a Struct are doubles;
    `integer_fields` names those the sink stores as Int64."""
    op = pb.UpdateOne(collection=collection, integerFields=integer_fields)
    op.filter.SetInParent()  # present even when empty: the gateway refuses a missing filter
    op.filter.update(filter)
    op.update.update(update)
    return op


def delete_many(collection: str, filter: dict) -> "pb.DeleteMany":
    """Deletes every document of `collection` matching `filter` (`{}`: all of them)."""
    op = pb.DeleteMany(collection=collection)
    op.filter.SetInParent()  # `{}`, not absent: the gateway refuses a missing filter
    op.filter.update(filter)
    return op


def es_index(document_id: str, document: dict) -> "pb.Index":
    """Indexes (creates or replaces) the document `document_id` of the connector's index."""
    op = pb.Index(id=document_id)
    op.document.update(document)
    return op


def es_update(document_id: str, document: dict) -> "pb.Update":
    """Merges `document` into the existing document `document_id` (a partial update)."""
    op = pb.Update(id=document_id)
    op.document.update(document)
    return op


_IGNORE = any_pb2.Any()
_IGNORE.Pack(pb.Ignore())


# ---------------------------------------------------------------------------------------------
# The bookings reducer (sidecar-examples/BOOKINGS.md)
# ---------------------------------------------------------------------------------------------

SQL_BOOKING_UPSERT = (
    "INSERT INTO bookings (booking_id, guest_id, room_id, check_in, check_out, price_cents, "
    "paid_cents, status, last_position) VALUES ($1, $2, $3, $4, $5, $6, 0, 'booked', $7) "
    "ON CONFLICT (booking_id) DO UPDATE SET guest_id = excluded.guest_id, "
    "room_id = excluded.room_id, check_in = excluded.check_in, check_out = excluded.check_out, "
    "price_cents = excluded.price_cents, status = 'booked', "
    "last_position = excluded.last_position"
)
SQL_GUEST_BOOKING = (
    "INSERT INTO guest_stats (guest_id, bookings) VALUES ($1, 1) "
    "ON CONFLICT (guest_id) DO UPDATE SET bookings = guest_stats.bookings + 1"
)
SQL_BOOKING_PAYMENT = (
    "UPDATE bookings SET paid_cents = paid_cents + $2, last_position = $3 WHERE booking_id = $1"
)
SQL_GUEST_PAYMENT = (
    "INSERT INTO guest_stats (guest_id, payments, paid_cents) VALUES ($1, 1, $2) "
    "ON CONFLICT (guest_id) DO UPDATE SET payments = guest_stats.payments + 1, "
    "paid_cents = guest_stats.paid_cents + excluded.paid_cents"
)
SQL_CHECKED_IN = (
    "UPDATE bookings SET status = 'checked_in', last_position = $2 WHERE booking_id = $1"
)
SQL_CHECKED_OUT = (
    "UPDATE bookings SET status = 'checked_out', last_position = $2 WHERE booking_id = $1"
)
SQL_CANCELLED = (
    "UPDATE bookings SET status = 'cancelled', last_position = $2 WHERE booking_id = $1"
)
SQL_GUEST_CANCELLATION = (
    "INSERT INTO guest_stats (guest_id, cancellations) VALUES ($1, 1) "
    "ON CONFLICT (guest_id) DO UPDATE SET cancellations = guest_stats.cancellations + 1"
)

Operations = List[Message]


def reduce_room_booked(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    guest_id = p.text("guestId")
    return [
        statement(
            SQL_BOOKING_UPSERT,
            text(p.text("bookingId")),
            text(guest_id),
            text(p.text("roomId")),
            text(p.text("checkIn")),
            text(p.text("checkOut")),
            int64(p.integer("priceCents")),
            int64(req.globalPosition),
        ),
        statement(SQL_GUEST_BOOKING, text(guest_id)),
    ]


def reduce_payment_recorded(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    booking_id = p.text("bookingId")
    guest_id = p.text("guestId")
    amount = p.integer("amountCents")
    return [
        statement(SQL_BOOKING_PAYMENT, text(booking_id), int64(amount), int64(req.globalPosition)),
        statement(SQL_GUEST_PAYMENT, text(guest_id), int64(amount)),
    ]


def reduce_checked_in(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [statement(SQL_CHECKED_IN, text(p.text("bookingId")), int64(req.globalPosition))]


def reduce_checked_out(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [statement(SQL_CHECKED_OUT, text(p.text("bookingId")), int64(req.globalPosition))]


def reduce_cancelled(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    booking_id = p.text("bookingId")
    guest_id = p.text("guestId")
    return [
        statement(SQL_CANCELLED, text(booking_id), int64(req.globalPosition)),
        statement(SQL_GUEST_CANCELLATION, text(guest_id)),
    ]


Reducer = Callable[["pb.ProjectionRequest", Payload], Operations]

# Event type -> SQL reducer. GuestRegistered and every type not listed is answered with Ignore.
REDUCERS: Dict[str, Reducer] = {
    "RoomBooked": reduce_room_booked,
    "PaymentRecorded": reduce_payment_recorded,
    "GuestCheckedIn": reduce_checked_in,
    "GuestCheckedOut": reduce_checked_out,
    "BookingCancelled": reduce_cancelled,
}


# ---------------------------------------------------------------------------------------------
# The MongoDB read model (REDUCER_TARGET=mongo; "MongoDB read model" in BOOKINGS.md)
# ---------------------------------------------------------------------------------------------

# The SQL tables as collections: the primary key as `_id`, the other columns as fields.
BOOKINGS_COLLECTION = "bookings"
GUEST_STATS_COLLECTION = "guest_stats"
# On every operation: the fields the sink stores as Int64 (as the Rust example lists them).
INTEGER_FIELDS = ("price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents")
GUEST_COUNTERS = ("bookings", "cancellations", "payments", "paid_cents")


def upsert(collection: str, document_id: str, set_fields: dict, inc_fields: dict) -> "pb.UpdateOne":
    """Upserts the document `_id: document_id`: `$set` for values, `$inc` for counters (an
    operator with no fields is left out)."""
    update = {}
    if set_fields:
        update["$set"] = set_fields
    if inc_fields:
        update["$inc"] = inc_fields
    return update_one(collection, {"_id": document_id}, update, INTEGER_FIELDS)


def count_for_guest(guest_id: str, **by: int) -> "pb.UpdateOne":
    """Adds `by` to a guest's counters. The others are incremented by 0, which creates a missing
    counter at 0 and leaves an existing one alone, like the SQL columns' DEFAULT 0."""
    counters = {name: 0 for name in GUEST_COUNTERS}
    counters.update(by)
    return upsert(GUEST_STATS_COLLECTION, guest_id, {}, counters)


def set_status(req: "pb.ProjectionRequest", p: Payload, status: str) -> "pb.UpdateOne":
    return upsert(
        BOOKINGS_COLLECTION, p.text("bookingId"), {"status": status, "last_position": req.globalPosition}, {}
    )


def mongo_room_booked(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    guest_id = p.text("guestId")
    booking = {
        "guest_id": guest_id,
        "room_id": p.text("roomId"),
        "check_in": p.text("checkIn"),
        "check_out": p.text("checkOut"),
        "price_cents": p.integer("priceCents"),
        "status": "booked",
        "last_position": req.globalPosition,
    }
    # $inc by 0: a booking booked again keeps what was paid, as the SQL upsert does.
    return [
        upsert(BOOKINGS_COLLECTION, p.text("bookingId"), booking, {"paid_cents": 0}),
        count_for_guest(guest_id, bookings=1),
    ]


def mongo_payment_recorded(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    booking_id = p.text("bookingId")
    guest_id = p.text("guestId")
    amount = p.integer("amountCents")
    return [
        upsert(BOOKINGS_COLLECTION, booking_id, {"last_position": req.globalPosition}, {"paid_cents": amount}),
        count_for_guest(guest_id, payments=1, paid_cents=amount),
    ]


def mongo_checked_in(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [set_status(req, p, "checked_in")]


def mongo_checked_out(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [set_status(req, p, "checked_out")]


def mongo_cancelled(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    guest_id = p.text("guestId")
    return [set_status(req, p, "cancelled"), count_for_guest(guest_id, cancellations=1)]


MONGO_REDUCERS: Dict[str, Reducer] = {
    "RoomBooked": mongo_room_booked,
    "PaymentRecorded": mongo_payment_recorded,
    "GuestCheckedIn": mongo_checked_in,
    "GuestCheckedOut": mongo_checked_out,
    "BookingCancelled": mongo_cancelled,
}


# ---------------------------------------------------------------------------------------------
# The Elasticsearch read model (REDUCER_TARGET=elastic; "`elastic`" in ../go/README.md)
# ---------------------------------------------------------------------------------------------
#
# The operations act on the connector's one index, so every document id starts with its kind.
# An Update can only merge fields, not add to a counter, so the documents hold facts and the SQL
# model's counters are aggregations at query time:
#
#   booking:<bookingId>  {kind: "booking", booking_id, guest_id, room_id, check_in, check_out,
#                         price_cents, status, last_position}
#   event:<eventId>      {kind: "booked" | "payment" | "cancellation", booking_id, guest_id,
#                         position, amount_cents (payments only)}
#
# A booking's paid_cents is the sum of its payments' amount_cents; a guest's bookings,
# cancellations and payments are the counts of its facts of each kind, its paid_cents the sum
# of its payments. Every id comes from the log, so an event delivered twice writes the same
# documents again. No bookings event removes a document, so no Delete is emitted.


def booking_document_id(booking_id: str) -> str:
    return f"booking:{booking_id}"


def fact(req: "pb.ProjectionRequest", p: Payload, kind: str, **extra) -> "pb.Index":
    """The fact that this event counted, keyed by its event id."""
    document = {
        "kind": kind,
        "booking_id": p.text("bookingId"),
        "guest_id": p.text("guestId"),
        "position": req.globalPosition,
        **extra,
    }
    return es_index(f"event:{req.eventId}", document)


def merge_status(req: "pb.ProjectionRequest", p: Payload, status: str) -> "pb.Update":
    return es_update(booking_document_id(p.text("bookingId")), {"status": status, "last_position": req.globalPosition})


def elastic_room_booked(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    booking_id = p.text("bookingId")
    booking = {
        "kind": "booking",
        "booking_id": booking_id,
        "guest_id": p.text("guestId"),
        "room_id": p.text("roomId"),
        "check_in": p.text("checkIn"),
        "check_out": p.text("checkOut"),
        "price_cents": p.integer("priceCents"),
        "status": "booked",
        "last_position": req.globalPosition,
    }
    return [es_index(booking_document_id(booking_id), booking), fact(req, p, "booked")]


def elastic_payment_recorded(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    moved = es_update(booking_document_id(p.text("bookingId")), {"last_position": req.globalPosition})
    return [moved, fact(req, p, "payment", amount_cents=p.integer("amountCents"))]


def elastic_checked_in(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [merge_status(req, p, "checked_in")]


def elastic_checked_out(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [merge_status(req, p, "checked_out")]


def elastic_cancelled(req: "pb.ProjectionRequest", p: Payload) -> Operations:
    return [merge_status(req, p, "cancelled"), fact(req, p, "cancellation")]


ELASTIC_REDUCERS: Dict[str, Reducer] = {
    "RoomBooked": elastic_room_booked,
    "PaymentRecorded": elastic_payment_recorded,
    "GuestCheckedIn": elastic_checked_in,
    "GuestCheckedOut": elastic_checked_out,
    "BookingCancelled": elastic_cancelled,
}


# ---------------------------------------------------------------------------------------------
# Targets and Describe
# ---------------------------------------------------------------------------------------------

# REDUCER_TARGET -> its reducers, and the operations that clear its read model for a rebuild.
TARGETS: Dict[str, Dict[str, Reducer]] = {"sql": REDUCERS, "mongo": MONGO_REDUCERS, "elastic": ELASTIC_REDUCERS}
RESETS: Dict[str, Callable[[], Operations]] = {
    "sql": lambda: [statement("DELETE FROM bookings"), statement("DELETE FROM guest_stats")],
    "mongo": lambda: [delete_many(BOOKINGS_COLLECTION, {}), delete_many(GUEST_STATS_COLLECTION, {})],
    # Nothing: every document id comes from the log, so projecting it again rewrites the same
    # documents (and the proto has no delete-by-query).
    "elastic": lambda: [],
}
SUPPORTED_TARGETS = tuple(TARGETS)

PROJECTION = "bookings"
# The version of the reducer's logic: change it when what the reducer writes changes, and a
# gateway with `sidecar.rebuild_on_new_version: true` rebuilds the read model.
PROJECTION_VERSION = "1"


def describe(target: str = "sql") -> "pb.DescribeResponse":
    """What Describe answers: the projection and its version, the event types the target's
    reducers handle (the gateway then sends only those) and the operations that clear the read
    model."""
    resp = pb.DescribeResponse(projection=PROJECTION, version=PROJECTION_VERSION, eventTypes=list(TARGETS[target]))
    for op in RESETS[target]():
        resp.resetOperations.add().Pack(op)
    return resp


def respond(req: "pb.ProjectionRequest", target: str = "sql") -> "pb.ProjectionResponse":
    """The response to one event: never raises, a failure becomes the response's `error`."""
    resp = pb.ProjectionResponse(eventId=req.eventId)
    reducer = TARGETS[target].get(req.eventType)
    if reducer is None:
        resp.operation.CopyFrom(_IGNORE)
        return resp
    try:
        ops = reducer(req, Payload(req))
    except PayloadError as exc:
        message = f"event {req.eventId} ({req.eventType}, stream {req.stream}): {exc}"
        log.warning("%s", message)
        resp.error.message = message
        resp.error.retryable = False
        return resp
    except Exception as exc:  # a bug or an out-of-range value: report it, keep the stream
        message = f"event {req.eventId} ({req.eventType}, stream {req.stream}): reducer failed: {exc!r}"
        log.exception("%s", message)
        resp.error.message = message
        resp.error.retryable = False
        return resp
    if ops:
        resp.operation.Pack(ops[0])
        for op in ops[1:]:
            resp.operations.add().Pack(op)
    else:
        resp.operation.CopyFrom(_IGNORE)
    return resp


# ---------------------------------------------------------------------------------------------
# gRPC server
# ---------------------------------------------------------------------------------------------


class ProjectionServicer(pb_grpc.ProjectionServicer):
    """Answers each request of a stream, in order, as it arrives.

    `stop()` ends every open stream cleanly (status OK) after the event it is answering, so a
    shutdown neither waits for the gateway to hang up nor cancels streams mid-answer; the gateway
    sends the unanswered events again when it reconnects."""

    def __init__(self, target: str = "sql") -> None:
        self._target = target
        self._stopping = False
        self._on_stop: set = set()

    def stop(self) -> None:
        self._stopping = True
        for wake in list(self._on_stop):
            wake()

    async def Project(self, request_iterator, context):
        peer = context.peer()
        log.info("stream opened by %s", peer)
        # grpcio sends the response headers only with the first answer unless told otherwise;
        # send them now, so the gateway sees the stream open and its request_timeout runs even
        # if the very first event never gets an answer.
        await context.send_initial_metadata(())
        count = 0
        task = asyncio.current_task()
        waiting = False  # True only while this stream awaits its next request

        def wake() -> None:
            # A stream waiting for a request is interrupted; one busy answering stops before
            # its next read.
            if waiting:
                task.cancel()

        self._on_stop.add(wake)
        requests = request_iterator.__aiter__()
        try:
            while not self._stopping:
                waiting = True
                try:
                    req = await requests.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if not self._stopping:
                        raise  # the gateway went away or the server is cancelling us
                    if hasattr(task, "uncancel"):  # Python 3.11+: the cancel was ours, handled
                        task.uncancel()
                    break
                finally:
                    waiting = False
                yield respond(req, self._target)
                count += 1
        finally:
            self._on_stop.discard(wake)
            log.info("stream from %s closed after %d events", peer, count)


class ProjectionInfoServicer(pb_grpc.ProjectionInfoServicer):
    """Answers Describe (optional in the contract) for the target."""

    def __init__(self, target: str = "sql") -> None:
        self._answer = describe(target)

    async def Describe(self, request, context):
        return self._answer


SERVER_OPTIONS = [
    # Fail on a port that is already taken instead of silently sharing it.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def split_address(address: str) -> tuple:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT, got {address!r}")
    return host, int(port)


async def start_server(address: str, target: str = "sql") -> tuple:
    """Creates, binds and starts the server; returns (server, servicer, bound port)."""
    server = aio.server(options=SERVER_OPTIONS)
    servicer = ProjectionServicer(target)
    pb_grpc.add_ProjectionServicer_to_server(servicer, server)
    pb_grpc.add_ProjectionInfoServicer_to_server(ProjectionInfoServicer(target), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return server, servicer, port


async def serve(address: str, grace: float, target: str) -> None:
    host, _ = split_address(address)
    server, servicer, port = await start_server(address, target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"listening on {host}:{port}\n")
    sys.stdout.flush()
    log.info("reducer ready on %s:%d (target %s)", host, port, target)
    await stop.wait()
    log.info("stopping (grace %.1fs)", grace)
    servicer.stop()
    await server.stop(grace)
    log.info("stopped")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"HOST:PORT to listen on (default {DEFAULT_ADDRESS}; port 0 picks a free port)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=2.0,
        help="on SIGTERM/SIGINT, seconds to finish answering before cancelling (default 2)",
    )
    args = parser.parse_args(argv)

    level = os.environ.get("REDUCER_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        sys.stderr.write(
            f"reducer.py: REDUCER_LOG_LEVEL={level!r} is not a level; "
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL\n"
        )
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    target = os.environ.get("REDUCER_TARGET", "sql")
    if target not in SUPPORTED_TARGETS:
        sys.stderr.write(
            f"reducer.py: REDUCER_TARGET={target!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_TARGETS)}\n"
        )
        return 2
    try:
        split_address(args.address)
    except ValueError as exc:
        parser.error(str(exc))

    try:
        asyncio.run(serve(args.address, args.grace, target))
    except OSError as exc:
        sys.stderr.write(f"reducer.py: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
