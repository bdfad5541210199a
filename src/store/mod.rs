//! The only place with SQL (for the code laid out in three layers so far): typed parameters in,
//! typed rows out; long statements are `.sql` files under `sql/`, named parameters documented in
//! each file.

pub mod key_ring;
pub mod keys;
pub mod ledger;
pub mod lockouts;
pub mod sessions;
pub mod sms;
