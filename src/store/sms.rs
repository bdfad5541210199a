//! SMS codes, their sends and the project-wide country allowlist as stored.

use crate::core::phone::ParsedPhone;
use crate::error::MfaResult;
use crate::store::audit::Event;
use crate::store::jsonb::Jsonb;
use crate::store::members::Member;
use crate::store::spi;

/// Locks the block of 10,000 numbers a code is about to go to, until the end of the transaction.
/// A row lock of an extension table: no role but the extension can take it, so no other role can
/// hold up the sends to a block (an advisory lock's key can be computed and held by anyone).
pub fn lock_number_block(block: &str) -> MfaResult<()> {
    let statement = include_str!("sql/lock_number_block.sql");
    if spi::execute(statement, &[block.into()])? == 0 {
        // The block was new: the second run sees its row.
        spi::execute(statement, &[block.into()])?;
    }
    Ok(())
}

/// The stored allowlist (empty while none was set).
pub fn stored_allowlist() -> MfaResult<Vec<String>> {
    let stored = spi::typed_row(
        "SELECT array_agg(country_code ORDER BY country_code) FROM mfa.country_code_allowlist",
        &[],
        |row| row.get::<Vec<String>>(1),
    )?;
    Ok(stored.flatten().unwrap_or_default())
}

/// Replaces the allowlist. Concurrent changes serialize on the table lock, which conflicts only
/// with other writers.
pub fn replace_allowlist(country_codes: &[String]) -> MfaResult<()> {
    spi::execute(
        "LOCK TABLE mfa.country_code_allowlist IN SHARE ROW EXCLUSIVE MODE",
        &[],
    )?;
    spi::execute(
        "WITH old AS (DELETE FROM mfa.country_code_allowlist RETURNING 1)
         INSERT INTO mfa.country_code_allowlist (country_code)
         SELECT unnest($1::text[]) FROM (SELECT count(*) FROM old) AS deleted_first",
        &[country_codes.to_vec().into()],
    )?;
    Ok(())
}

/// What a send is checked against (`sms_send_limits.sql`).
pub struct SendLimits {
    /// The stored allowlist (empty while none was set).
    pub stored_allowlist: Vec<String>,
    pub member_hour: i64,
    pub member_recent: i64,
    pub number_hour: i64,
    pub prefix_hour: i64,
}

/// Reads the limits of a send to `phone`, after taking its block's lock unless `block_locked`
/// (the member's load took it).
pub fn read_send_limits(
    member: &Member,
    phone: &ParsedPhone,
    to_verified_number: bool,
    min_interval_seconds: f64,
    block_locked: bool,
) -> MfaResult<SendLimits> {
    if !block_locked {
        lock_number_block(phone.rate_limit_prefix())?;
    }
    let limits = spi::typed_row(
        include_str!("sql/sms_send_limits.sql"),
        &[
            phone.e164.as_str().into(),
            phone.rate_limit_prefix().into(),
            min_interval_seconds.into(),
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            to_verified_number.into(),
        ],
        |row| {
            let count = |name: &str| {
                row.get_by_name::<i64, _>(name)
                    .map(Option::unwrap_or_default)
            };
            Ok(SendLimits {
                stored_allowlist: row
                    .get_by_name::<Vec<String>, _>("allowlist")?
                    .unwrap_or_default(),
                member_hour: count("member_hour")?,
                member_recent: count("member_recent")?,
                number_hour: count("number_hour")?,
                prefix_hour: count("prefix_hour")?,
            })
        },
    )?;
    Ok(limits.expect("one row"))
}

/// A code about to be queued (`sms_code_queue.sql`).
pub struct QueuedCode<'a> {
    pub phone: &'a ParsedPhone,
    pub locale: &'a str,
    pub body: &'a str,
    pub lifetime_seconds: f64,
    pub code_ciphertext: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub key_id: &'a str,
    pub to_verified_number: bool,
    pub notify_workers: bool,
}

/// Queues `code` for the member, replacing their live code, with its audit event.
pub fn queue_code(event: &Event, code: QueuedCode) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/sms_code_queue.sql"),
        &[
            event.organization_id.into(),
            event.member_id.into(),
            event.request_id.into(),
            Jsonb(event.details.clone()).into(),
            code.phone.e164.as_str().into(),
            code.phone.country_code.as_str().into(),
            code.phone.rate_limit_prefix().into(),
            code.locale.into(),
            code.body.into(),
            code.lifetime_seconds.into(),
            code.code_ciphertext.into(),
            code.code_hash.into(),
            code.key_id.into(),
            code.to_verified_number.into(),
            code.notify_workers.into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}
