CREATE TABLE IF NOT EXISTS bookings (
  booking_id    TEXT PRIMARY KEY,
  guest_id      TEXT NOT NULL,
  room_id       TEXT NOT NULL,
  check_in      TEXT NOT NULL,
  check_out     TEXT NOT NULL,
  price_cents   BIGINT NOT NULL,
  paid_cents    BIGINT NOT NULL DEFAULT 0,
  status        TEXT NOT NULL,
  last_position BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS guest_stats (
  guest_id      TEXT PRIMARY KEY,
  bookings      BIGINT NOT NULL DEFAULT 0,
  cancellations BIGINT NOT NULL DEFAULT 0,
  payments      BIGINT NOT NULL DEFAULT 0,
  paid_cents    BIGINT NOT NULL DEFAULT 0
);
