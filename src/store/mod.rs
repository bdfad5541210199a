//! The only place with SQL: typed parameters in, typed rows out; long statements are `.sql` files
//! under `sql/`, named parameters documented in each file.

pub mod jsonb;
pub mod key_ring;
pub mod keyring;
pub mod keys;
pub mod ledger;
pub mod lockouts;
pub mod sessions;
pub mod sms;
pub mod spi;
