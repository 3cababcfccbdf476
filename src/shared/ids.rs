//! Record identifiers.

use uuid::Uuid;

/// A new time-ordered (v7) UUID. Clients may create ids offline the same way, so ids never need
/// a round trip to the database to be known.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
