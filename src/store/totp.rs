//! Authenticator-app registrations and recovery codes as stored: secrets encrypted, codes as keyed
//! hashes only.

use crate::error::MfaResult;
use crate::store::members::Member;
use crate::store::spi;
use pgrx::datum::TimestampWithTimeZone;

/// Replaces the member's registration with a new one, active at once (`pending_minutes` is
/// `None`) or pending for that long.
pub fn replace_registration(
    member: &Member,
    registration_id: &str,
    secret_ciphertext: Vec<u8>,
    pending_minutes: Option<i32>,
) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/totp_registration_replace.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            registration_id.into(),
            secret_ciphertext.into(),
            pending_minutes.into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}

/// Deletes the member's pending authenticator app, and their recovery codes unless a passkey
/// stands behind them.
pub fn discard_pending(member: &Member) -> MfaResult<()> {
    spi::execute(
        "WITH app AS (DELETE FROM mfa.totp_registrations
                       WHERE organization_id = $1 AND member_id = $2 AND status = 'pending')
         DELETE FROM mfa.recovery_codes WHERE organization_id = $1 AND member_id = $2 AND $3 = 0",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            member.webauthn_registrations.into(),
        ],
    )?;
    Ok(())
}

/// Replaces the member's recovery codes with `hashes`, made with key `key_id`.
pub fn replace_recovery_codes(
    member: &Member,
    hashes: Vec<Vec<u8>>,
    key_id: &str,
) -> MfaResult<()> {
    spi::execute(
        // The old codes go first (the INSERT reads the DELETE's count).
        "WITH old AS (DELETE FROM mfa.recovery_codes WHERE organization_id = $1 AND member_id = $2 RETURNING 1)
         INSERT INTO mfa.recovery_codes (organization_id, member_id, code_hash, key_id)
         SELECT $1, $2, h, $4 FROM (SELECT count(*) FROM old) AS deleted_first, unnest($3::bytea[]) AS h
         ON CONFLICT DO NOTHING",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            hashes.into(),
            key_id.into(),
        ],
    )?;
    Ok(())
}

/// How many recovery codes remain unused, and when the set was minted.
pub fn recovery_codes_left(member: &Member) -> MfaResult<(i64, Option<TimestampWithTimeZone>)> {
    let counts = spi::typed_row(
        "SELECT count(*) FILTER (WHERE used_at IS NULL) AS remaining, min(created_at) AS created_at
           FROM mfa.recovery_codes WHERE organization_id = $1 AND member_id = $2",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
        ],
        |row| {
            Ok((
                row.get_by_name::<i64, _>("remaining")?.unwrap_or(0),
                row.get_by_name::<TimestampWithTimeZone, _>("created_at")?,
            ))
        },
    )?;
    Ok(counts.unwrap_or((0, None)))
}

/// The keys that hashed the member's unused recovery codes.
pub fn recovery_code_keys(member: &Member) -> MfaResult<Vec<String>> {
    let keys = spi::typed_row(
        "SELECT array_agg(DISTINCT key_id) FROM mfa.recovery_codes
          WHERE organization_id = $1 AND member_id = $2 AND used_at IS NULL",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
        ],
        |row| row.get::<Vec<String>>(1),
    )?;
    Ok(keys.flatten().unwrap_or_default())
}

/// Spends the unused recovery code whose hash is one of `candidates` (one per key); returns how
/// many remain after it and the spent code's hash, `None` when none matched. Comparing keyed hashes by equality leaks
/// nothing useful: without the key, knowing where two hashes differ says nothing about the code.
pub fn spend_recovery_code(
    member: &Member,
    candidates: Vec<Vec<u8>>,
) -> MfaResult<Option<(i64, Vec<u8>)>> {
    Ok(spi::typed_row(
        "WITH used AS (
             UPDATE mfa.recovery_codes SET used_at = now()
              WHERE organization_id = $1 AND member_id = $2 AND code_hash = ANY($3) AND used_at IS NULL
          RETURNING code_hash)
         SELECT (SELECT count(*) FROM mfa.recovery_codes
                  WHERE organization_id = $1 AND member_id = $2 AND used_at IS NULL) - 1,
                used.code_hash
           FROM used LIMIT 1",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            candidates.into(),
        ],
        |row| Ok(row.get::<i64>(1)?.zip(row.get::<Vec<u8>>(2)?)),
    )?
    .flatten())
}
