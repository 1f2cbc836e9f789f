//! The reference read model: the bookings reducer of `sidecar-examples/BOOKINGS.md` computed
//! directly from the event log, in log order, with no gateway and no sidecar involved. Tests
//! compare what a sidecar + the gateway produced against it; the `guest_stats` counters make
//! any double application visible.

use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub guest_id: String,
    pub room_id: String,
    pub check_in: String,
    pub check_out: String,
    pub price_cents: i64,
    pub paid_cents: i64,
    pub status: String,
    pub last_position: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestStats {
    pub bookings: i64,
    pub cancellations: i64,
    pub payments: i64,
    pub paid_cents: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModel {
    pub bookings: BTreeMap<String, Booking>,
    pub guests: BTreeMap<String, GuestStats>,
}

impl ReadModel {
    /// Applies one event as the example reducers do.
    pub fn apply(&mut self, position: i64, event_type: &str, data: &Value) {
        let text = |k: &str| data[k].as_str().unwrap_or_default().to_string();
        let int = |k: &str| data[k].as_f64().unwrap_or_default() as i64;
        match event_type {
            "RoomBooked" => {
                let paid = self.bookings.get(&text("bookingId")).map_or(0, |b| b.paid_cents);
                self.bookings.insert(
                    text("bookingId"),
                    Booking {
                        guest_id: text("guestId"),
                        room_id: text("roomId"),
                        check_in: text("checkIn"),
                        check_out: text("checkOut"),
                        price_cents: int("priceCents"),
                        paid_cents: paid,
                        status: "booked".into(),
                        last_position: position,
                    },
                );
                self.guests.entry(text("guestId")).or_default().bookings += 1;
            }
            "PaymentRecorded" => {
                if let Some(b) = self.bookings.get_mut(&text("bookingId")) {
                    b.paid_cents += int("amountCents");
                    b.last_position = position;
                }
                let g = self.guests.entry(text("guestId")).or_default();
                g.payments += 1;
                g.paid_cents += int("amountCents");
            }
            "GuestCheckedIn" | "GuestCheckedOut" | "BookingCancelled" => {
                let status = match event_type {
                    "GuestCheckedIn" => "checked_in",
                    "GuestCheckedOut" => "checked_out",
                    _ => "cancelled",
                };
                if let Some(b) = self.bookings.get_mut(&text("bookingId")) {
                    b.status = status.into();
                    b.last_position = position;
                }
                if event_type == "BookingCancelled" {
                    self.guests.entry(text("guestId")).or_default().cancellations += 1;
                }
            }
            _ => {}
        }
    }

    /// The model computed from every event of a SQLite event log, optionally only those the
    /// predicate keeps.
    pub fn from_log(log: &Path, keep: impl Fn(&str, &str) -> bool) -> Self {
        Self::from_log_where(log, |_, stream, event_type| keep(stream, event_type))
    }

    /// [`Self::from_log`] with a predicate that also sees each event's position.
    pub fn from_log_where(log: &Path, keep: impl Fn(u64, &str, &str) -> bool) -> Self {
        let conn = rusqlite::Connection::open(log).expect("log");
        let mut stmt = conn.prepare("SELECT position, stream, event_type, data FROM events ORDER BY position").unwrap();
        let mut model = Self::default();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))
            .unwrap();
        for row in rows {
            let (position, stream, event_type, data) = row.unwrap();
            if keep(position as u64, &stream, &event_type) {
                model.apply(position, &event_type, &serde_json::from_str(&data).unwrap());
            }
        }
        model
    }

    /// What a SQLite target holds.
    pub fn from_sqlite(target: &Path) -> Self {
        let conn = rusqlite::Connection::open(target).expect("target");
        let mut model = Self::default();
        let mut stmt = conn
            .prepare("SELECT booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position FROM bookings")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Booking {
                        guest_id: r.get(1)?,
                        room_id: r.get(2)?,
                        check_in: r.get(3)?,
                        check_out: r.get(4)?,
                        price_cents: r.get(5)?,
                        paid_cents: r.get(6)?,
                        status: r.get(7)?,
                        last_position: r.get(8)?,
                    },
                ))
            })
            .unwrap();
        for row in rows {
            let (id, booking) = row.unwrap();
            model.bookings.insert(id, booking);
        }
        let mut stmt = conn.prepare("SELECT guest_id, bookings, cancellations, payments, paid_cents FROM guest_stats").unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    GuestStats { bookings: r.get(1)?, cancellations: r.get(2)?, payments: r.get(3)?, paid_cents: r.get(4)? },
                ))
            })
            .unwrap();
        for row in rows {
            let (id, stats) = row.unwrap();
            model.guests.insert(id, stats);
        }
        model
    }

    /// Panics with the first differences when the models differ.
    pub fn assert_same(&self, expected: &ReadModel) {
        if self == expected {
            return;
        }
        let mut diffs = Vec::new();
        for (id, b) in &expected.bookings {
            match self.bookings.get(id) {
                Some(actual) if actual == b => {}
                other => diffs.push(format!("booking {id}: expected {b:?}, got {other:?}")),
            }
        }
        for id in self.bookings.keys().filter(|k| !expected.bookings.contains_key(*k)) {
            diffs.push(format!("unexpected booking {id}"));
        }
        for (id, g) in &expected.guests {
            match self.guests.get(id) {
                Some(actual) if actual == g => {}
                other => diffs.push(format!("guest {id}: expected {g:?}, got {other:?}")),
            }
        }
        for id in self.guests.keys().filter(|k| !expected.guests.contains_key(*k)) {
            diffs.push(format!("unexpected guest {id}"));
        }
        panic!(
            "read model differs from the reference in {} place(s) ({} bookings / {} guests expected); first ones:\n{}",
            diffs.len(),
            expected.bookings.len(),
            expected.guests.len(),
            diffs.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}
