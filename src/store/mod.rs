//! The only place with SQL: typed parameters in, typed rows out; long statements are `.sql` files
//! under `sql/`, named parameters documented in each file.

pub mod attempts;
pub mod audit;
pub mod cluster;
pub mod jsonb;
pub mod key_ring;
pub mod keyring;
pub mod keys;
pub mod ledger;
pub mod lockouts;
pub mod members;
pub mod organizations;
pub mod outbox;
pub mod remembered_devices;
pub mod sessions;
pub mod sms;
pub mod sms_workers;
pub mod spi;
pub mod totp;

/// A statement's text without its comments, for tests of what a statement contains.
#[cfg(test)]
pub(crate) fn without_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}
