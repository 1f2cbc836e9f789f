//! The PostgreSQL target.
