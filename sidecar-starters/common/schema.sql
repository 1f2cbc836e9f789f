-- The read model: one row per loan. The gateway runs this file (`init_sql_file` in
-- gateway.yaml) each time it opens readmodel.db, so every statement must be safe to run again.
CREATE TABLE IF NOT EXISTS loans (
  loan_id       TEXT PRIMARY KEY,
  book_id       TEXT NOT NULL,
  member_id     TEXT NOT NULL,
  -- timestampValue parameters arrive in SQLite as RFC 3339 text in UTC with microseconds,
  -- e.g. 2026-09-01T10:00:00.000000Z, which sorts in time order.
  lent_at       TEXT NOT NULL,
  returned_at   TEXT,             -- NULL while the book is out
  last_position INTEGER NOT NULL  -- the log position of the last event applied to the row
);
