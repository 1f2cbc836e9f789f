-- The read model of REDUCER_TARGET=sql, run by the gateway's `sink.sqlite.init_sql_file`
-- (SQLite). Eventuous's SQL Server sidecar expects its table to exist; so does this one.
CREATE TABLE IF NOT EXISTS Bookings (
  BookingId    TEXT PRIMARY KEY,
  RoomId       TEXT NOT NULL,
  GuestId      TEXT NOT NULL,
  CheckInDate  TEXT NOT NULL,
  CheckOutDate TEXT NOT NULL,
  BookingPrice REAL NOT NULL,
  PaidAmount   REAL NOT NULL,
  Outstanding  REAL NOT NULL,
  Paid         INTEGER NOT NULL DEFAULT 0
);
