//! Generates bookings events: each booking stream goes RoomBooked -> PaymentRecorded (1-3) ->
//! GuestCheckedIn -> GuestCheckedOut, or is cancelled before check-in; each new guest gets a
//! `guest-*` stream with GuestRegistered (which the example reducers ignore). The same seed
//! always gives the same events, ids included.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use crate::sources::sqlite::NewEvent;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Booked { payments: u8 },
    CheckedIn,
    Done,
}

#[derive(Debug, Clone)]
struct Booking {
    id: u64,
    guest: u64,
    stage: Stage,
}

/// A deterministic source of bookings events.
pub struct BookingsGenerator {
    rng: StdRng,
    target_streams: usize,
    bookings: Vec<Booking>,
    active: Vec<usize>,
    guests: u64,
    queued: Vec<NewEvent>,
}

impl BookingsGenerator {
    /// `streams` is the number of booking streams to spread events over (guest streams come
    /// on top).
    pub fn new(seed: u64, streams: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            target_streams: streams.max(1),
            bookings: Vec::new(),
            active: Vec::new(),
            guests: 0,
            queued: Vec::new(),
        }
    }

    /// The next `n` events.
    pub fn take(&mut self, n: usize) -> Vec<NewEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }

    pub fn next_event(&mut self) -> NewEvent {
        if let Some(e) = self.queued.pop() {
            return e;
        }
        let open_new = self.active.is_empty()
            || (self.bookings.len() < self.target_streams && self.rng.random_bool(0.4));
        if open_new { self.book() } else { self.advance() }
    }

    fn event(&mut self, stream: String, event_type: &str, data: serde_json::Value) -> NewEvent {
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        NewEvent {
            stream,
            event_type: event_type.into(),
            data: data.to_string(),
            metadata: Some(json!({"source": "demo", "correlationId": id.to_string()}).to_string()),
            event_id: Some(id.to_string()),
            created: None,
        }
    }

    fn book(&mut self) -> NewEvent {
        let id = self.bookings.len() as u64 + 1;
        let guest = if self.guests == 0 || self.rng.random_bool(0.6) {
            self.guests += 1;
            let g = self.guests;
            let registered = self.event(
                format!("guest-{g}"),
                "GuestRegistered",
                json!({"guestId": format!("guest-{g}"), "name": format!("Guest {g}"), "email": format!("guest{g}@example.com")}),
            );
            self.queued.push(registered);
            g
        } else {
            self.rng.random_range(1..=self.guests)
        };
        let day = self.rng.random_range(1..=28);
        let nights = self.rng.random_range(1..=7);
        let room = self.rng.random_range(100..400);
        let price = self.rng.random_range(80..400) * 100 * nights;
        let booked = self.event(
            format!("booking-{id}"),
            "RoomBooked",
            json!({
                "bookingId": format!("booking-{id}"),
                "guestId": format!("guest-{guest}"),
                "roomId": format!("room-{room}"),
                "checkIn": format!("2026-12-{day:02}"),
                "checkOut": format!("2027-01-{:02}", (day + nights).min(31)),
                "priceCents": price,
            }),
        );
        self.bookings.push(Booking { id, guest, stage: Stage::Booked { payments: 0 } });
        self.active.push(self.bookings.len() - 1);
        // The guest registration (if any) comes first in the log.
        if let Some(registered) = self.queued.pop() {
            self.queued.push(booked);
            return registered;
        }
        booked
    }

    fn advance(&mut self) -> NewEvent {
        let slot = self.rng.random_range(0..self.active.len());
        let index = self.active[slot];
        let Booking { id, guest, stage } = self.bookings[index].clone();
        let booking_id = format!("booking-{id}");
        let guest_id = format!("guest-{guest}");
        let roll: f64 = self.rng.random();
        let (next, event_type, data) = match stage {
            Stage::Booked { .. } if roll < 0.08 => (
                Stage::Done,
                "BookingCancelled",
                json!({"bookingId": booking_id, "guestId": guest_id, "reason": "plans changed"}),
            ),
            Stage::Booked { payments } if payments < 3 && (payments == 0 || roll < 0.5) => (
                Stage::Booked { payments: payments + 1 },
                "PaymentRecorded",
                json!({
                    "bookingId": booking_id,
                    "guestId": guest_id,
                    "paymentId": format!("pay-{id}-{payments}"),
                    "amountCents": (roll * 1000.0) as i64 * 100 + 5000,
                }),
            ),
            Stage::Booked { .. } => (
                Stage::CheckedIn,
                "GuestCheckedIn",
                json!({"bookingId": booking_id, "guestId": guest_id, "at": "2026-12-01T15:00:00Z"}),
            ),
            Stage::CheckedIn | Stage::Done => (
                Stage::Done,
                "GuestCheckedOut",
                json!({"bookingId": booking_id, "guestId": guest_id, "at": "2026-12-05T11:00:00Z"}),
            ),
        };
        self.bookings[index].stage = next;
        if next == Stage::Done {
            self.active.swap_remove(slot);
        }
        self.event(booking_id, event_type, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_realistic() {
        let a = BookingsGenerator::new(7, 50).take(500);
        let b = BookingsGenerator::new(7, 50).take(500);
        assert_eq!(a.iter().map(|e| &e.event_id).collect::<Vec<_>>(), b.iter().map(|e| &e.event_id).collect::<Vec<_>>());
        let types: std::collections::HashSet<&str> = a.iter().map(|e| e.event_type.as_str()).collect();
        for t in ["RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled", "GuestRegistered"] {
            assert!(types.contains(t), "{t} missing");
        }
        // Every booking stream starts with RoomBooked.
        let mut seen = std::collections::HashSet::new();
        for e in &a {
            if e.stream.starts_with("booking-") && seen.insert(e.stream.clone()) {
                assert_eq!(e.event_type, "RoomBooked", "{}", e.stream);
            }
        }
    }
}
