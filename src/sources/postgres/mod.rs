//! The PostgreSQL (Eventuous schema) source.
