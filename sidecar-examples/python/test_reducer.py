"""Unit tests of the Python bookings reducer (reducer.py), stdlib unittest only.

    scripts/python-sidecar.sh                       # venv + stubs, once
    sidecar-examples/python/.venv/bin/python -m unittest -v test_reducer   # from this folder

They check, for every bookings event type, the exact statements and typed parameters that
sidecar-examples/BOOKINGS.md prescribes (the SQL text is compared with BOOKINGS.md itself) and,
with REDUCER_TARGET=mongo, the exact MongoDB upserts of its "MongoDB read model" section; with
REDUCER_TARGET=elastic, the exact Elasticsearch operations of the examples' `elastic` target
(../go/README.md) and that, applied in order, they hold the SQL model; that unknown types are
ignored, that bad payloads become non-retryable errors, what Describe
answers, and that the gRPC service answers a stream in order with the request's eventId. The
gateway's end-to-end test (tests/python_sidecar.rs) runs these too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import unittest

# gRPC core logs connection teardown (GOAWAY) at info level when a test's server stops.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from google.protobuf import json_format  # noqa: E402

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


INTEGER_FIELDS = ["price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents"]


def upserts(resp: pb.ProjectionResponse) -> list:
    """The response's operations, in order, each an UpdateOne as
    (collection, filter, update, integerFields) with the Structs as dicts."""
    out = []
    for op in [resp.operation, *resp.operations]:
        update = pb.UpdateOne()
        if not op.Unpack(update):
            raise AssertionError(f"not a projection.UpdateOne: {op.type_url}")
        if not update.HasField("filter") or len(update.pipeline):
            raise AssertionError(f"an UpdateOne needs a filter and no pipeline here: {update}")
        out.append((
            update.collection,
            json_format.MessageToDict(update.filter),
            json_format.MessageToDict(update.update),
            list(update.integerFields),
        ))
    return out


def booking(booking_id: str, update: dict) -> tuple:
    return ("bookings", {"_id": booking_id}, update, INTEGER_FIELDS)


def guest(guest_id: str, **by: int) -> tuple:
    counters = {"bookings": 0, "cancellations": 0, "payments": 0, "paid_cents": 0}
    counters.update(by)
    return ("guest_stats", {"_id": guest_id}, {"$inc": counters}, INTEGER_FIELDS)


class MongoReduceTests(unittest.TestCase):
    """REDUCER_TARGET=mongo: the table of BOOKINGS.md's "MongoDB read model", field for field."""

    def respond(self, event_type: str, payload: dict, position: int = 42) -> pb.ProjectionResponse:
        req = request(event_type, payload, position=position)
        resp = reducer.respond(req, "mongo")
        self.assertEqual(resp.eventId, req.eventId)
        self.assertFalse(resp.HasField("error"), resp.error.message)
        return resp

    def test_room_booked_upserts_the_booking_and_counts_it_for_the_guest(self):
        resp = self.respond("RoomBooked", BOOKING)
        self.assertEqual(resp.operation.type_url, "type.googleapis.com/projection.UpdateOne")
        self.assertEqual(upserts(resp), [
            booking("booking-7", {
                "$set": {
                    "guest_id": "guest-3", "room_id": "room-101", "check_in": "2026-12-01",
                    "check_out": "2026-12-04", "price_cents": 36000, "status": "booked", "last_position": 42,
                },
                "$inc": {"paid_cents": 0},
            }),
            guest("guest-3", bookings=1),
        ])

    def test_payment_recorded_adds_to_the_booking_and_to_the_guest(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "paymentId": "pay-7-0", "amountCents": 12500}
        self.assertEqual(upserts(self.respond("PaymentRecorded", payload, position=43)), [
            booking("booking-7", {"$set": {"last_position": 43}, "$inc": {"paid_cents": 12500}}),
            guest("guest-3", payments=1, paid_cents=12500),
        ])

    def test_status_events_set_the_status_and_a_cancellation_is_counted(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "at": "2026-12-01T15:00:00Z", "reason": "r"}
        for event_type, status in (("GuestCheckedIn", "checked_in"), ("GuestCheckedOut", "checked_out")):
            with self.subTest(event_type):
                self.assertEqual(
                    upserts(self.respond(event_type, payload, position=44)),
                    [booking("booking-7", {"$set": {"status": status, "last_position": 44}})],
                )
        self.assertEqual(upserts(self.respond("BookingCancelled", payload, position=45)), [
            booking("booking-7", {"$set": {"status": "cancelled", "last_position": 45}}),
            guest("guest-3", cancellations=1),
        ])

    def test_numbers_are_doubles_named_in_integer_fields(self):
        update = pb.UpdateOne()
        self.assertTrue(reducer.respond(request("RoomBooked", BOOKING), "mongo").operation.Unpack(update))
        price = update.update.fields["$set"].struct_value.fields["price_cents"]
        self.assertEqual((price.WhichOneof("kind"), price.number_value), ("number_value", 36000.0))
        self.assertIn("price_cents", update.integerFields)

    def test_applied_in_order_the_upserts_build_the_sql_model(self):
        """A small upsert engine ($set, $inc on an `_id` filter) shows the documents hold what
        the SQL rows would: a booking booked again keeps its payments, counters start at 0."""
        collections: dict = {}
        events = [
            ("RoomBooked", BOOKING),
            ("GuestRegistered", {"guestId": "guest-3", "name": "G", "email": "g@example.com"}),
            ("PaymentRecorded", {"bookingId": "booking-7", "guestId": "guest-3", "amountCents": 20000}),
            ("RoomBooked", dict(BOOKING, roomId="room-102", priceCents=40000)),
            ("PaymentRecorded", {"bookingId": "booking-7", "guestId": "guest-3", "amountCents": 16000}),
            ("GuestCheckedIn", {"bookingId": "booking-7"}),
            ("RoomBooked", dict(BOOKING, bookingId="booking-8", priceCents=9000)),
            ("BookingCancelled", {"bookingId": "booking-8", "guestId": "guest-3"}),
        ]
        for position, (event_type, payload) in enumerate(events, start=1):
            resp = reducer.respond(request(event_type, payload, position=position), "mongo")
            if resp.operation.Is(pb.Ignore.DESCRIPTOR):
                continue
            for collection, filter, update, _ in upserts(resp):
                doc = collections.setdefault(collection, {}).setdefault(filter["_id"], {"_id": filter["_id"]})
                for operator, fields in update.items():
                    for name, value in fields.items():
                        if operator == "$set":
                            doc[name] = value
                        elif operator == "$inc":
                            doc[name] = doc.get(name, 0) + value
                        else:
                            self.fail(f"unexpected update operator {operator}")
        self.assertEqual(collections["bookings"]["booking-7"], {
            "_id": "booking-7", "guest_id": "guest-3", "room_id": "room-102", "check_in": "2026-12-01",
            "check_out": "2026-12-04", "price_cents": 40000, "paid_cents": 36000, "status": "checked_in",
            "last_position": 6,
        })
        self.assertEqual(collections["bookings"]["booking-8"]["status"], "cancelled")
        self.assertEqual(collections["bookings"]["booking-8"]["paid_cents"], 0)
        self.assertEqual(collections["guest_stats"], {
            "guest-3": {"_id": "guest-3", "bookings": 3, "cancellations": 1, "payments": 2, "paid_cents": 36000},
        })

    def test_payload_json_gives_the_same_upserts_as_the_struct(self):
        for event_type, payload in (
            ("RoomBooked", BOOKING),
            ("PaymentRecorded", {"bookingId": "b", "guestId": "g", "amountCents": 5000}),
        ):
            with self.subTest(event_type):
                from_struct = reducer.respond(request(event_type, payload), "mongo")
                from_json = reducer.respond(request(event_type, payload, as_json=True), "mongo")
                self.assertEqual(upserts(from_json), upserts(from_struct))

    def test_unknown_types_are_ignored_and_bad_payloads_are_errors(self):
        resp = reducer.respond(request("GuestRegistered", {"guestId": "guest-3"}), "mongo")
        self.assertTrue(resp.operation.Is(pb.Ignore.DESCRIPTOR))
        self.assertEqual(len(resp.operations), 0)
        with self.assertLogs("reducer", "WARNING"):
            resp = reducer.respond(request("PaymentRecorded", {"bookingId": "b", "guestId": "g"}), "mongo")
        self.assertFalse(resp.HasField("operation"))
        self.assertFalse(resp.error.retryable)
        self.assertIn("amountCents", resp.error.message)


def documents(resp: pb.ProjectionResponse) -> list:
    """The response's operations, in order, each as (operation, id, document) with the document
    as a dict: ("Index", ...) or ("Update", ...), none naming an index or using the options."""
    out = []
    for op in [resp.operation, *resp.operations]:
        if op.Is(pb.Index.DESCRIPTOR):
            index = pb.Index()
            op.Unpack(index)
            if index.index or index.externalVersion:
                raise AssertionError(f"an Index with options: {index}")
            out.append(("Index", index.id, json_format.MessageToDict(index.document)))
        elif op.Is(pb.Update.DESCRIPTOR):
            update = pb.Update()
            op.Unpack(update)
            if update.index or update.docAsUpsert or update.HasField("upsert"):
                raise AssertionError(f"an Update with options: {update}")
            out.append(("Update", update.id, json_format.MessageToDict(update.document)))
        else:
            raise AssertionError(f"not an Elasticsearch document operation: {op.type_url}")
    return out


EVENT_ID = "6f1c2a9e-0000-4000-8000-000000000001"


class ElasticReduceTests(unittest.TestCase):
    """REDUCER_TARGET=elastic: the operations of the examples' `elastic` target (the Rust, Go and
    Java examples emit the same), field for field."""

    def respond(self, event_type: str, payload: dict, position: int = 42) -> pb.ProjectionResponse:
        req = request(event_type, payload, position=position)
        resp = reducer.respond(req, "elastic")
        self.assertEqual(resp.eventId, req.eventId)
        self.assertFalse(resp.HasField("error"), resp.error.message)
        return resp

    def test_room_booked_indexes_the_booking_and_a_booked_fact(self):
        resp = self.respond("RoomBooked", BOOKING)
        self.assertEqual(resp.operation.type_url, "type.googleapis.com/projection.Index")
        self.assertEqual(documents(resp), [
            ("Index", "booking:booking-7", {
                "kind": "booking", "booking_id": "booking-7", "guest_id": "guest-3", "room_id": "room-101",
                "check_in": "2026-12-01", "check_out": "2026-12-04", "price_cents": 36000, "status": "booked",
                "last_position": 42,
            }),
            ("Index", f"event:{EVENT_ID}", {"kind": "booked", "booking_id": "booking-7", "guest_id": "guest-3", "position": 42}),
        ])

    def test_a_payment_moves_the_booking_and_is_a_fact_with_its_amount(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "paymentId": "pay-7-0", "amountCents": 12500}
        self.assertEqual(documents(self.respond("PaymentRecorded", payload, position=43)), [
            ("Update", "booking:booking-7", {"last_position": 43}),
            ("Index", f"event:{EVENT_ID}", {
                "kind": "payment", "booking_id": "booking-7", "guest_id": "guest-3", "position": 43, "amount_cents": 12500,
            }),
        ])

    def test_status_events_merge_the_status_and_a_cancellation_is_a_fact(self):
        payload = {"bookingId": "booking-7", "guestId": "guest-3", "at": "2026-12-01T15:00:00Z", "reason": "r"}
        for event_type, status in (("GuestCheckedIn", "checked_in"), ("GuestCheckedOut", "checked_out")):
            with self.subTest(event_type):
                self.assertEqual(
                    documents(self.respond(event_type, payload, position=44)),
                    [("Update", "booking:booking-7", {"status": status, "last_position": 44})],
                )
        self.assertEqual(documents(self.respond("BookingCancelled", payload, position=45)), [
            ("Update", "booking:booking-7", {"status": "cancelled", "last_position": 45}),
            ("Index", f"event:{EVENT_ID}", {"kind": "cancellation", "booking_id": "booking-7", "guest_id": "guest-3", "position": 45}),
        ])

    def test_numbers_are_struct_numbers(self):
        index = pb.Index()
        self.assertTrue(self.respond("RoomBooked", BOOKING).operation.Unpack(index))
        price = index.document.fields["price_cents"]
        self.assertEqual((price.WhichOneof("kind"), price.number_value), ("number_value", 36000.0))

    def test_applied_in_order_the_documents_hold_the_sql_model_and_a_replay_changes_nothing(self):
        """A small engine (Index creates or replaces, Update merges into an existing document)
        and the aggregations over the facts give the SQL model's numbers; every event applied
        twice, as a replay does, leaves the same documents."""
        events = [
            ("RoomBooked", BOOKING),
            ("GuestRegistered", {"guestId": "guest-3", "name": "G", "email": "g@example.com"}),
            ("PaymentRecorded", {"bookingId": "booking-7", "guestId": "guest-3", "amountCents": 20000}),
            ("RoomBooked", dict(BOOKING, roomId="room-102", priceCents=40000)),
            ("PaymentRecorded", {"bookingId": "booking-7", "guestId": "guest-3", "amountCents": 16000}),
            ("GuestCheckedIn", {"bookingId": "booking-7"}),
            ("RoomBooked", dict(BOOKING, bookingId="booking-8", priceCents=9000)),
            ("BookingCancelled", {"bookingId": "booking-8", "guestId": "guest-3"}),
        ]

        def project(times: int) -> dict:
            index: dict = {}
            for position, (event_type, payload) in enumerate(events, start=1):
                req = request(event_type, payload, position=position)
                req.eventId = f"event-{position}"
                for _ in range(times):
                    resp = reducer.respond(req, "elastic")
                    if resp.operation.Is(pb.Ignore.DESCRIPTOR):
                        continue
                    for operation, document_id, document in documents(resp):
                        if operation == "Index":
                            index[document_id] = dict(document)
                        else:
                            self.assertIn(document_id, index, "an Update of a missing document fails")
                            index[document_id].update(document)
            return index

        index = project(1)
        self.assertEqual(project(2), index)
        self.assertEqual(index["booking:booking-7"], {
            "kind": "booking", "booking_id": "booking-7", "guest_id": "guest-3", "room_id": "room-102",
            "check_in": "2026-12-01", "check_out": "2026-12-04", "price_cents": 40000, "status": "checked_in",
            "last_position": 6,
        })
        self.assertEqual(index["booking:booking-8"]["status"], "cancelled")
        facts = [d for d in index.values() if d["kind"] != "booking"]
        kinds = [d["kind"] for d in facts]
        payments = [d for d in facts if d["kind"] == "payment"]
        # booking-7's paid_cents, then guest-3's bookings, cancellations, payments and paid_cents.
        self.assertEqual(sum(d["amount_cents"] for d in payments if d["booking_id"] == "booking-7"), 36000)
        self.assertEqual(
            (kinds.count("booked"), kinds.count("cancellation"), kinds.count("payment"), sum(d["amount_cents"] for d in payments)),
            (3, 1, 2, 36000),
        )
        self.assertEqual({d["guest_id"] for d in facts}, {"guest-3"})

    def test_payload_json_gives_the_same_operations_as_the_struct(self):
        for event_type, payload in (
            ("RoomBooked", BOOKING),
            ("PaymentRecorded", {"bookingId": "b", "guestId": "g", "amountCents": 5000}),
            ("BookingCancelled", {"bookingId": "b", "guestId": "g", "reason": "r"}),
        ):
            with self.subTest(event_type):
                from_struct = reducer.respond(request(event_type, payload), "elastic")
                from_json = reducer.respond(request(event_type, payload, as_json=True), "elastic")
                self.assertEqual(documents(from_json), documents(from_struct))

    def test_unknown_types_are_ignored_and_bad_payloads_are_errors(self):
        resp = reducer.respond(request("GuestRegistered", {"guestId": "guest-3"}), "elastic")
        self.assertTrue(resp.operation.Is(pb.Ignore.DESCRIPTOR))
        self.assertEqual(len(resp.operations), 0)
        for event_type, payload, field in (
            ("PaymentRecorded", {"bookingId": "b", "guestId": "g"}, "amountCents"),
            ("RoomBooked", dict(BOOKING, priceCents=99.5), "priceCents"),
            ("BookingCancelled", {"bookingId": 7, "guestId": "g"}, "bookingId"),
        ):
            with self.subTest(event_type), self.assertLogs("reducer", "WARNING"):
                resp = reducer.respond(request(event_type, payload), "elastic")
                self.assertFalse(resp.HasField("operation"))
                self.assertEqual(len(resp.operations), 0)
                self.assertFalse(resp.error.retryable)
                self.assertIn(field, resp.error.message)


class DescribeTests(unittest.TestCase):
    def test_declares_the_projection_and_exactly_the_reduced_types(self):
        for target in reducer.SUPPORTED_TARGETS:
            with self.subTest(target):
                answer = reducer.describe(target)
                self.assertEqual((answer.projection, answer.version), ("bookings", "1"))
                self.assertEqual(
                    list(answer.eventTypes),
                    ["RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled"],
                )

    def test_sql_reset_clears_both_tables(self):
        resets = []
        for op in reducer.describe("sql").resetOperations:
            statement = pb.Statement()
            self.assertTrue(op.Unpack(statement), op.type_url)
            resets.append((statement.sql, len(statement.params)))
        self.assertEqual(resets, [("DELETE FROM bookings", 0), ("DELETE FROM guest_stats", 0)])

    def test_mongo_reset_empties_both_collections(self):
        resets = []
        for op in reducer.describe("mongo").resetOperations:
            delete = pb.DeleteMany()
            self.assertTrue(op.Unpack(delete), op.type_url)
            # An empty filter, present on the wire: the gateway refuses a missing one.
            self.assertTrue(delete.HasField("filter"))
            resets.append((delete.collection, json_format.MessageToDict(delete.filter), list(delete.integerFields)))
        self.assertEqual(resets, [("bookings", {}, []), ("guest_stats", {}, [])])

    def test_elastic_has_no_reset(self):
        # Projecting the log again rewrites the same documents; the proto has no delete-by-query.
        self.assertEqual(len(reducer.describe("elastic").resetOperations), 0)


class ServiceTests(unittest.TestCase):
    def test_the_target_s_operations_and_description_are_served(self):
        async def run() -> tuple:
            server, _, port = await reducer.start_server("127.0.0.1:0", "mongo")
            try:
                async with reducer.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    answer = await reducer.pb_grpc.ProjectionInfoStub(channel).Describe(pb.DescribeRequest())
                    stub = reducer.pb_grpc.ProjectionStub(channel)
                    responses = [r async for r in stub.Project(iter([request("RoomBooked", BOOKING)]))]
                    return answer, responses
            finally:
                await server.stop(None)

        answer, responses = asyncio.run(run())
        self.assertEqual(answer, reducer.describe("mongo"))
        self.assertEqual([upserts(r) for r in responses], [upserts(reducer.respond(request("RoomBooked", BOOKING), "mongo"))])

    def test_the_elastic_target_is_served(self):
        async def run() -> tuple:
            server, _, port = await reducer.start_server("127.0.0.1:0", "elastic")
            try:
                async with reducer.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    answer = await reducer.pb_grpc.ProjectionInfoStub(channel).Describe(pb.DescribeRequest())
                    stub = reducer.pb_grpc.ProjectionStub(channel)
                    responses = [r async for r in stub.Project(iter([request("RoomBooked", BOOKING)]))]
                    return answer, responses
            finally:
                await server.stop(None)

        answer, responses = asyncio.run(run())
        self.assertEqual(answer, reducer.describe("elastic"))
        expected = documents(reducer.respond(request("RoomBooked", BOOKING), "elastic"))
        self.assertEqual([documents(r) for r in responses], [expected])

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
