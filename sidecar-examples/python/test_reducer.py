"""Unit tests of the Python bookings reducer (reducer.py), stdlib unittest only.

    scripts/python-sidecar.sh                       # venv + stubs, once
    sidecar-examples/python/.venv/bin/python -m unittest -v test_reducer   # from this folder

They check, for every bookings event type, the exact statements and typed parameters that
sidecar-examples/BOOKINGS.md prescribes (the SQL text is compared with BOOKINGS.md itself),
that unknown types are ignored, that bad payloads become non-retryable errors, and that the
gRPC service answers a stream in order with the request's eventId. The gateway's end-to-end
test (tests/python_sidecar.rs) runs these too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import unittest

# gRPC core logs connection teardown (GOAWAY) at info level when a test's server stops.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import reducer  # noqa: E402 (after the environment it reads)
from reducer import pb

HERE = os.path.dirname(os.path.abspath(__file__))
BOOKINGS_MD = os.path.join(HERE, "..", "BOOKINGS.md")

BOOKING = {
    "bookingId": "booking-7",
    "guestId": "guest-3",
    "roomId": "room-101",
    "checkIn": "2026-12-01",
    "checkOut": "2026-12-04",
    "priceCents": 36000,
}


def request(event_type: str, payload: dict, *, position: int = 42, as_json: bool = False) -> pb.ProjectionRequest:
    """A request as the gateway sends it: the payload as a Struct (numbers become doubles), or
    only as raw JSON bytes (`payload: json`)."""
    req = pb.ProjectionRequest(
        eventType=event_type,
        eventId="6f1c2a9e-0000-4000-8000-000000000001",
        stream="booking-7",
        globalPosition=position,
        streamRevision=0,
    )
    if as_json:
        req.payloadJson = json.dumps(payload).encode()
        req.contentType = "application/json"
    else:
        req.eventPayload.update(payload)
    return req


def statements(resp: pb.ProjectionResponse) -> list:
    """The response's operations, in order, each unpacked as a Statement."""
    ops = [resp.operation, *resp.operations]
    out = []
    for op in ops:
        statement = pb.Statement()
        if not op.Unpack(statement):
            raise AssertionError(f"not a projection.Statement: {op.type_url}")
        out.append(statement)
    return out


def params(statement: pb.Statement) -> list:
    """Each parameter as (kind, value), e.g. ("stringValue", "booking-7")."""
    return [(p.WhichOneof("kind"), getattr(p, p.WhichOneof("kind"))) for p in statement.params]


def s(value: str) -> tuple:
    return ("stringValue", value)


def i(value: int) -> tuple:
    return ("int64Value", value)


def bookings_md_sql() -> dict:
    """Event type -> the numbered SQL statements of its section in BOOKINGS.md."""
    sections: dict = {}
    current = None
    with open(BOOKINGS_MD, encoding="utf-8") as f:
        for line in f:
            heading = re.match(r"^\*\*(\w+)\*\*", line)
            if heading:
                current = sections.setdefault(heading.group(1), [])
                continue
            numbered = re.match(r"^\d+\. `([^`]+)`", line)
            if numbered and current is not None:
                current.append(numbered.group(1))
    return sections


class ReduceTests(unittest.TestCase):
    def assert_ignored(self, resp: pb.ProjectionResponse) -> None:
        self.assertEqual(resp.operation.type_url, "type.googleapis.com/projection.Ignore")
        self.assertTrue(resp.operation.Is(pb.Ignore.DESCRIPTOR))
        self.assertEqual(len(resp.operations), 0)
        self.assertFalse(resp.HasField("error"))

    def test_room_booked_upserts_the_booking_and_counts_it_for_the_guest(self):
        req = request("RoomBooked", BOOKING)
        resp = reducer.respond(req)
        self.assertEqual(resp.eventId, req.eventId)
        self.assertFalse(resp.HasField("error"))
        self.assertEqual(resp.operation.type_url, "type.googleapis.com/projection.Statement")
        upsert, count = statements(resp)
        self.assertEqual(upsert.sql, reducer.SQL_BOOKING_UPSERT)
        self.assertEqual(
            params(upsert),
            [s("booking-7"), s("guest-3"), s("room-101"), s("2026-12-01"), s("2026-12-04"), i(36000), i(42)],
        )
        self.assertEqual(count.sql, reducer.SQL_GUEST_BOOKING)
        self.assertEqual(params(count), [s("guest-3")])

    def test_payment_recorded_adds_to_the_booking_and_to_the_guest(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "paymentId": "pay-7-0", "amountCents": 12500}
        paid, count = statements(reducer.respond(request("PaymentRecorded", payload, position=43)))
        self.assertEqual(paid.sql, reducer.SQL_BOOKING_PAYMENT)
        self.assertEqual(params(paid), [s("booking-7"), i(12500), i(43)])
        self.assertEqual(count.sql, reducer.SQL_GUEST_PAYMENT)
        self.assertEqual(params(count), [s("guest-3"), i(12500)])

    def test_check_in_and_check_out_set_the_status(self):
        for event_type, sql in (
            ("GuestCheckedIn", reducer.SQL_CHECKED_IN),
            ("GuestCheckedOut", reducer.SQL_CHECKED_OUT),
        ):
            with self.subTest(event_type):
                payload = {"bookingId": "booking-7", "guestId": "guest-3", "at": "2026-12-01T15:00:00Z"}
                resp = reducer.respond(request(event_type, payload, position=44))
                self.assertEqual(len(resp.operations), 0)
                (update,) = statements(resp)
                self.assertEqual(update.sql, sql)
                self.assertEqual(params(update), [s("booking-7"), i(44)])

    def test_booking_cancelled_sets_the_status_and_counts_it_for_the_guest(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "reason": "plans changed"}
        cancel, count = statements(reducer.respond(request("BookingCancelled", payload, position=45)))
        self.assertEqual(cancel.sql, reducer.SQL_CANCELLED)
        self.assertEqual(params(cancel), [s("booking-7"), i(45)])
        self.assertEqual(count.sql, reducer.SQL_GUEST_CANCELLATION)
        self.assertEqual(params(count), [s("guest-3")])

    def test_guest_registered_and_unknown_types_are_ignored(self):
        registered = {"guestId": "guest-3", "name": "Guest 3", "email": "guest3@example.com"}
        for event_type, payload in (
            ("GuestRegistered", registered),
            ("RoomRepainted", {"roomId": "room-101"}),
            ("V1.RoomBooked", BOOKING),
            ("roombooked", BOOKING),
        ):
            with self.subTest(event_type):
                req = request(event_type, payload)
                resp = reducer.respond(req)
                self.assertEqual(resp.eventId, req.eventId)
                self.assert_ignored(resp)

    def test_payload_json_gives_the_same_statements_as_the_struct(self):
        for event_type, payload in (
            ("RoomBooked", BOOKING),
            ("PaymentRecorded", {"bookingId": "b", "guestId": "g", "amountCents": 5000}),
            ("BookingCancelled", {"bookingId": "b", "guestId": "g", "reason": "r"}),
        ):
            with self.subTest(event_type):
                from_struct = reducer.respond(request(event_type, payload))
                from_json = reducer.respond(request(event_type, payload, as_json=True))
                self.assertEqual(from_json, from_struct)

    def test_every_statement_is_the_sql_of_bookings_md(self):
        spec = bookings_md_sql()
        payload = dict(BOOKING, amountCents=100)
        for event_type in ("RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled"):
            with self.subTest(event_type):
                self.assertIn(event_type, spec, "BOOKINGS.md has no section for it")
                produced = [st.sql for st in statements(reducer.respond(request(event_type, payload)))]
                self.assertEqual(produced, spec[event_type])

    def test_a_missing_field_is_a_non_retryable_error_naming_it(self):
        req = request("PaymentRecorded", {"bookingId": "booking-7", "amountCents": 100})
        with self.assertLogs("reducer", "WARNING") as logs:
            resp = reducer.respond(req)
        self.assertIn("guestId", logs.output[0])
        self.assertEqual(resp.eventId, req.eventId)
        self.assertFalse(resp.HasField("operation"))
        self.assertEqual(len(resp.operations), 0)
        self.assertFalse(resp.error.retryable)
        self.assertIn("guestId", resp.error.message)
        self.assertIn(req.eventId, resp.error.message)

    def test_wrongly_typed_fields_are_errors(self):
        for field, value in (("priceCents", 99.5), ("priceCents", "36000"), ("priceCents", True), ("roomId", 101)):
            with self.subTest(field=field, value=value):
                for as_json in (False, True):
                    with self.assertLogs("reducer", "WARNING"):
                        resp = reducer.respond(request("RoomBooked", dict(BOOKING, **{field: value}), as_json=as_json))
                    self.assertTrue(resp.HasField("error"), resp)
                    self.assertIn(field, resp.error.message)
                    self.assertFalse(resp.HasField("operation"))

    def test_payload_json_that_is_not_an_object_is_an_error(self):
        for payload_json, problem in ((b"[1, 2]", "not a JSON object"), (b"{oops", "not valid JSON")):
            with self.subTest(payload_json), self.assertLogs("reducer", "WARNING"):
                req = pb.ProjectionRequest(eventType="RoomBooked", eventId="e", payloadJson=payload_json)
                self.assertIn(problem, reducer.respond(req).error.message)


class ServiceTests(unittest.TestCase):
    def test_a_stream_is_answered_in_order_with_each_request_s_event_id(self):
        async def run() -> list:
            server, _, port = await reducer.start_server("127.0.0.1:0")
            try:
                async with reducer.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = reducer.pb_grpc.ProjectionStub(channel)
                    requests = []
                    for n in range(200):
                        event_type = ("RoomBooked", "GuestRegistered", "PaymentRecorded")[n % 3]
                        req = request(event_type, dict(BOOKING, amountCents=n), position=n + 1)
                        req.eventId = f"event-{n}"
                        requests.append(req)
                    responses = [r async for r in stub.Project(iter(requests))]
                    return [(r.eventId, r.operation.type_url.rsplit(".", 1)[-1]) for r in responses]
            finally:
                await server.stop(None)

        answered = asyncio.run(run())
        expected = [(f"event-{n}", ("Statement", "Ignore", "Statement")[n % 3]) for n in range(200)]
        self.assertEqual(answered, expected)

    def test_the_stream_opens_before_any_event_is_answered(self):
        async def run() -> None:
            server, _, port = await reducer.start_server("127.0.0.1:0")
            try:
                async with reducer.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = reducer.pb_grpc.ProjectionStub(channel)
                    hang_up = asyncio.Event()

                    async def no_requests():
                        await hang_up.wait()
                        yield pb.ProjectionRequest()  # never reached

                    call = stub.Project(no_requests())
                    await asyncio.wait_for(call.initial_metadata(), 10)
                    call.cancel()
            finally:
                await server.stop(None)

        asyncio.run(run())

    def test_stop_ends_an_open_stream_cleanly_and_at_once(self):
        async def run() -> tuple:
            server, servicer, port = await reducer.start_server("127.0.0.1:0")
            try:
                async with reducer.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = reducer.pb_grpc.ProjectionStub(channel)
                    hang_up = asyncio.Event()

                    async def requests():
                        yield request("GuestRegistered", {"guestId": "guest-3"})
                        await hang_up.wait()  # the gateway keeps the stream open

                    call = stub.Project(requests())
                    first = await asyncio.wait_for(call.read(), 10)
                    servicer.stop()
                    rest = await asyncio.wait_for(call.read(), 10)
                    code = await call.code()
                    hang_up.set()
                    return first.eventId, rest, code
            finally:
                await server.stop(None)

        event_id, rest, code = asyncio.run(run())
        self.assertEqual(event_id, "6f1c2a9e-0000-4000-8000-000000000001")
        self.assertIs(rest, reducer.aio.EOF)
        self.assertEqual(code, reducer.grpc.StatusCode.OK)


if __name__ == "__main__":
    unittest.main()
