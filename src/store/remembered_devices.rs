//! Remembered devices as stored: a device's current token (hashed), the tokens it rotated away,
//! and every write to them.

use crate::error::MfaResult;
use crate::store::spi;
use serde_json::Value;

/// The device whose current token was presented, as stored.
pub struct PresentedDevice {
    pub member_id: String,
    pub device_id: String,
    pub fingerprint_hash: Option<Vec<u8>>,
    /// Not expired (on the clock), and created after the member's last lock or suspected theft.
    pub live: bool,
}

/// The device of the organization whose *current* token hashes to `token_hash`, locked until the
/// end of the transaction: two logins presenting one token rotate it one after the other, and the
/// second no longer finds it.
pub fn find_current(
    organization_id: &str,
    token_hash: &[u8],
) -> MfaResult<Option<PresentedDevice>> {
    spi::typed_row(
        "SELECT d.member_id, d.device_id::text AS device_id, d.fingerprint_hash,
                d.expires_at > clock_timestamp() AND NOT EXISTS (
                    SELECT 1 FROM mfa.member_lockouts l
                     WHERE l.organization_id = $1 AND l.member_id = d.member_id
                       AND l.devices_revoked_before >= d.created_at) AS live
           FROM mfa.remembered_devices d
          WHERE d.organization_id = $1 AND d.token_hash = $2
            FOR UPDATE OF d",
        &[organization_id.into(), token_hash.to_vec().into()],
        |row| {
            Ok(PresentedDevice {
                member_id: row
                    .get_by_name::<String, _>("member_id")?
                    .unwrap_or_default(),
                device_id: row
                    .get_by_name::<String, _>("device_id")?
                    .unwrap_or_default(),
                fingerprint_hash: row.get_by_name::<Vec<u8>, _>("fingerprint_hash")?,
                live: row.get_by_name::<bool, _>("live")?.unwrap_or(false),
            })
        },
    )
}

/// The member whose device once had the token that hashes to `token_hash` (rotated away since).
pub fn owner_of_retired(organization_id: &str, token_hash: &[u8]) -> MfaResult<Option<String>> {
    Ok(spi::typed_row(
        "SELECT member_id FROM mfa.remembered_device_retired_tokens
          WHERE organization_id = $1 AND token_hash = $2",
        &[organization_id.into(), token_hash.to_vec().into()],
        |row| row.get::<String>(1),
    )?
    .flatten())
}

/// Rotates a device's token (`remembered_device_rotate.sql`); false when it was not there.
pub fn rotate(
    organization_id: &str,
    member_id: &str,
    device_id: &str,
    presented_hash: &[u8],
    new_hash: &[u8],
    request_id: &str,
) -> MfaResult<bool> {
    let rotated = spi::typed_row(
        include_str!("sql/remembered_device_rotate.sql"),
        &[
            organization_id.into(),
            member_id.into(),
            device_id.into(),
            presented_hash.to_vec().into(),
            new_hash.to_vec().into(),
            request_id.into(),
            spi::clock().into(),
        ],
        |row| row.get::<i64>(1),
    )?;
    Ok(rotated.flatten() == Some(1))
}

/// The arguments of `remembered_device_create.sql`.
pub struct NewDevice<'a> {
    pub organization_id: &'a str,
    pub member_id: &'a str,
    pub login_token_hash: Vec<u8>,
    pub token_hash: Vec<u8>,
    pub fingerprint_hash: Option<Vec<u8>>,
    pub device_name: Option<&'a str>,
    pub days: i32,
    pub request_id: &'a str,
}

/// Remembers a device; `None` when its login already remembered one.
pub fn create(device: NewDevice) -> MfaResult<Option<Value>> {
    spi::json_row(
        include_str!("sql/remembered_device_create.sql"),
        &[
            device.organization_id.into(),
            device.member_id.into(),
            device.login_token_hash.into(),
            device.token_hash.into(),
            device.fingerprint_hash.into(),
            device.device_name.into(),
            device.days.into(),
            device.request_id.into(),
            spi::clock().into(),
        ],
    )
}

/// Which devices a revocation takes.
pub struct Revocation<'a> {
    pub organization_id: &'a str,
    /// `None`: every member of the organization.
    pub member_id: Option<&'a str>,
    /// `None`: all of the member's (or organization's) devices.
    pub device_id: Option<&'a str>,
    pub request_id: &'a str,
    /// Why, for the audit trail.
    pub reason: &'a str,
}

/// Revokes devices (`remembered_device_revoke.sql`); returns how many.
pub fn revoke(revocation: Revocation) -> MfaResult<i64> {
    Ok(spi::typed_row(
        include_str!("sql/remembered_device_revoke.sql"),
        &[
            revocation.organization_id.into(),
            revocation.member_id.into(),
            revocation.device_id.into(),
            revocation.request_id.into(),
            revocation.reason.into(),
        ],
        |row| row.get::<i64>(1),
    )?
    .flatten()
    .unwrap_or(0))
}

/// The member's unexpired devices, newest first, as the API shows them (never a token or hash).
pub fn list(organization_id: &str, member_id: &str) -> MfaResult<Vec<Value>> {
    spi::json_rows(
        "SELECT jsonb_build_object('device_id', device_id::text, 'device_name', device_name,
                                   'created_at', created_at, 'last_used_at', last_used_at,
                                   'expires_at', expires_at)
           FROM mfa.remembered_devices d
          WHERE organization_id = $1 AND member_id = $2 AND expires_at > clock_timestamp()
            AND NOT EXISTS (SELECT 1 FROM mfa.member_lockouts l
                             WHERE l.organization_id = $1 AND l.member_id = $2
                               AND l.devices_revoked_before >= d.created_at)
          ORDER BY created_at DESC, device_id",
        &[organization_id.into(), member_id.into()],
    )
}

/// Whether the member's device still stands: it exists (it was not revoked, nor created by the
/// member's last lock or suspected theft) and has not expired (on the clock). Whether its organization still remembers devices is the caller's policy.
pub fn live(organization_id: &str, member_id: &str, device_id: &str) -> MfaResult<bool> {
    Ok(spi::typed_row(
        "SELECT EXISTS (
                SELECT FROM mfa.remembered_devices d
                 WHERE organization_id = $1 AND member_id = $2 AND device_id = $3::uuid
                   AND expires_at > clock_timestamp()
                   AND NOT EXISTS (SELECT 1 FROM mfa.member_lockouts l
                                    WHERE l.organization_id = $1 AND l.member_id = $2
                                      AND l.devices_revoked_before >= d.created_at))",
        &[organization_id.into(), member_id.into(), device_id.into()],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}
