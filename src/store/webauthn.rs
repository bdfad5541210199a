//! Passkeys as stored: the project's allowed origins, members' registrations (credential id,
//! COSE public key, signature counter) and the challenges handed to browsers (SHA-256 only).

use crate::error::MfaResult;
use crate::store::members::Member;
use crate::store::spi;
use pgrx::datum::TimestampWithTimeZone;

/// The allowed origins, sorted.
pub fn allowed_origins() -> MfaResult<Vec<String>> {
    let stored = spi::typed_row(
        "SELECT array_agg(origin ORDER BY origin) FROM mfa.webauthn_allowed_origins",
        &[],
        |row| row.get::<Vec<String>>(1),
    )?;
    Ok(stored.flatten().unwrap_or_default())
}

/// Replaces the allowed origins. Concurrent changes serialize on the table lock, which conflicts
/// only with other writers.
pub fn replace_allowed_origins(origins: &[String]) -> MfaResult<()> {
    spi::execute(
        "LOCK TABLE mfa.webauthn_allowed_origins IN SHARE ROW EXCLUSIVE MODE",
        &[],
    )?;
    spi::execute(
        "WITH old AS (DELETE FROM mfa.webauthn_allowed_origins RETURNING 1)
         INSERT INTO mfa.webauthn_allowed_origins (origin)
         SELECT unnest($1::text[]) FROM (SELECT count(*) FROM old) AS deleted_first",
        &[origins.to_vec().into()],
    )?;
    Ok(())
}

/// The member's user handle, made from `fresh` at their first registration. The member's row is
/// locked by the caller.
pub fn user_handle(member: &Member, fresh: Vec<u8>) -> MfaResult<Vec<u8>> {
    let handle = spi::typed_row(
        "UPDATE mfa.members SET webauthn_user_handle = coalesce(webauthn_user_handle, $3)
          WHERE organization_id = $1 AND member_id = $2
      RETURNING webauthn_user_handle",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            fresh.into(),
        ],
        |row| row.get::<Vec<u8>>(1),
    )?;
    Ok(handle.flatten().unwrap_or_default())
}

/// The credential ids of the member's passkeys (a browser is told which to exclude at
/// registration and which to offer at authentication), those suspected of cloning left out
/// when `usable_only`.
pub fn credential_ids(member: &Member, usable_only: bool) -> MfaResult<Vec<Vec<u8>>> {
    spi::typed_rows(
        "SELECT credential_id FROM mfa.webauthn_registrations
          WHERE organization_id = $1 AND member_id = $2
            AND (NOT $3 OR clone_suspected_at IS NULL)
          ORDER BY created_at",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            usable_only.into(),
        ],
        |row| Ok(row.get::<Vec<u8>>(1)?.unwrap_or_default()),
    )
}

/// Which ceremony a challenge is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ceremony {
    Registration,
    Authentication,
}

impl Ceremony {
    pub fn as_str(self) -> &'static str {
        match self {
            Ceremony::Registration => "registration",
            Ceremony::Authentication => "authentication",
        }
    }
}

/// A challenge as handed to a browser: what it is bound to and what was asked with it.
pub struct Challenge<'a> {
    pub challenge_hash: Vec<u8>,
    pub ceremony: Ceremony,
    pub token_hash: Option<Vec<u8>>,
    pub domain: &'a str,
    pub user_verification: &'a str,
    pub authenticator_type: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub timeout_seconds: i32,
}

/// Stores a new challenge. It replaces the member's earlier one of the same ceremony and token
/// (a login holds one live challenge per ceremony), and the member's expired ones go.
pub fn issue_challenge(member: &Member, challenge: &Challenge) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/webauthn_challenge_issue.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            challenge.challenge_hash.clone().into(),
            challenge.ceremony.as_str().into(),
            challenge.token_hash.clone().into(),
            challenge.domain.into(),
            challenge.user_verification.into(),
            challenge.authenticator_type.into(),
            challenge.user_agent.into(),
            challenge.timeout_seconds.into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}

/// A challenge consumed by a verification.
pub struct IssuedChallenge {
    pub token_hash: Option<Vec<u8>>,
    pub domain: String,
    pub user_verification: String,
    pub authenticator_type: Option<String>,
    pub user_agent: Option<String>,
    pub expired: bool,
    /// When it was issued.
    pub created_at: TimestampWithTimeZone,
}

/// Deletes the member's challenge of this ceremony whose hash is `challenge_hash` and returns it
/// (`None`: never issued, or consumed already). Whatever the verification then finds, the
/// challenge is spent.
pub fn consume_challenge(
    member: &Member,
    ceremony: Ceremony,
    challenge_hash: Vec<u8>,
) -> MfaResult<Option<IssuedChallenge>> {
    spi::typed_row(
        "DELETE FROM mfa.webauthn_challenges
          WHERE organization_id = $1 AND member_id = $2 AND challenge_hash = $3 AND ceremony = $4
      RETURNING token_hash, domain, user_verification, authenticator_type, user_agent,
                expires_at <= $5 AS expired, created_at",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            challenge_hash.into(),
            ceremony.as_str().into(),
            spi::clock().into(),
        ],
        |row| {
            Ok(IssuedChallenge {
                token_hash: row.get_by_name::<Vec<u8>, _>("token_hash")?,
                domain: row.get_by_name::<String, _>("domain")?.unwrap_or_default(),
                user_verification: row
                    .get_by_name::<String, _>("user_verification")?
                    .unwrap_or_default(),
                authenticator_type: row.get_by_name::<String, _>("authenticator_type")?,
                user_agent: row.get_by_name::<String, _>("user_agent")?,
                expired: row.get_by_name::<bool, _>("expired")?.unwrap_or(true),
                created_at: row
                    .get_by_name::<TimestampWithTimeZone, _>("created_at")?
                    .expect("NOT NULL"),
            })
        },
    )
}

/// A member's passkey as stored.
pub struct Registration {
    pub webauthn_registration_id: String,
    pub credential_id: Vec<u8>,
    pub public_key: Vec<u8>,
    pub sign_count: i64,
    pub domain: String,
    pub user_agent: Option<String>,
    pub backup_eligible: bool,
    pub clone_suspected: bool,
    /// The member's user handle: an assertion naming another is refused.
    pub user_handle: Vec<u8>,
    /// When it last signed in.
    pub last_authenticated_at: Option<TimestampWithTimeZone>,
}

/// The member's passkey with this credential id, locked until the end of the transaction.
pub fn registration_for(member: &Member, credential_id: &[u8]) -> MfaResult<Option<Registration>> {
    spi::typed_row(
        "SELECT webauthn_registration_id::text AS webauthn_registration_id, credential_id,
                public_key, sign_count, domain, user_agent, backup_eligible,
                clone_suspected_at IS NOT NULL AS clone_suspected, last_authenticated_at,
                (SELECT webauthn_user_handle FROM mfa.members
                  WHERE organization_id = $1 AND member_id = $2) AS user_handle
           FROM mfa.webauthn_registrations
          WHERE organization_id = $1 AND member_id = $2 AND credential_id = $3
            FOR NO KEY UPDATE",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            credential_id.to_vec().into(),
        ],
        |row| {
            let text = |name: &str| row.get_by_name::<String, _>(name);
            let flag = |name: &str| row.get_by_name::<bool, _>(name).map(|b| b.unwrap_or(false));
            Ok(Registration {
                webauthn_registration_id: text("webauthn_registration_id")?.unwrap_or_default(),
                credential_id: row
                    .get_by_name::<Vec<u8>, _>("credential_id")?
                    .unwrap_or_default(),
                public_key: row
                    .get_by_name::<Vec<u8>, _>("public_key")?
                    .unwrap_or_default(),
                sign_count: row.get_by_name::<i64, _>("sign_count")?.unwrap_or(0),
                domain: text("domain")?.unwrap_or_default(),
                user_agent: text("user_agent")?,
                backup_eligible: flag("backup_eligible")?,
                clone_suspected: flag("clone_suspected")?,
                user_handle: row
                    .get_by_name::<Vec<u8>, _>("user_handle")?
                    .unwrap_or_default(),
                last_authenticated_at: row
                    .get_by_name::<TimestampWithTimeZone, _>("last_authenticated_at")?,
            })
        },
    )
}

/// A passkey about to be stored.
pub struct NewRegistration<'a> {
    pub webauthn_registration_id: &'a str,
    pub credential_id: &'a [u8],
    pub public_key: &'a [u8],
    pub algorithm: i32,
    pub sign_count: i64,
    pub domain: &'a str,
    pub user_agent: Option<&'a str>,
    pub authenticator_type: Option<&'a str>,
    pub aaguid: String,
    pub attestation_format: &'a str,
    pub transports: Vec<String>,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

/// Stores a passkey and counts it on the member; `false` when its credential id is registered
/// already (to anyone).
pub fn insert_registration(member: &Member, new: &NewRegistration) -> MfaResult<bool> {
    let inserted = spi::typed_row(
        include_str!("sql/webauthn_registration_insert.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            new.webauthn_registration_id.into(),
            new.credential_id.to_vec().into(),
            new.public_key.to_vec().into(),
            new.algorithm.into(),
            new.sign_count.into(),
            new.domain.into(),
            new.user_agent.into(),
            new.authenticator_type.into(),
            new.aaguid.as_str().into(),
            new.attestation_format.into(),
            new.transports.clone().into(),
            new.user_verified.into(),
            new.backup_eligible.into(),
            new.backed_up.into(),
            spi::clock().into(),
        ],
        |row| row.get::<bool>(1),
    )?;
    Ok(inserted.flatten().unwrap_or(false))
}

/// A verified assertion: the passkey's new counter and backup state, and when it was used.
pub fn record_use(
    organization_id: &str,
    registration_id: &str,
    sign_count: i64,
    backed_up: bool,
) -> MfaResult<()> {
    spi::execute(
        "UPDATE mfa.webauthn_registrations
            SET sign_count = $3, backed_up = $4, last_authenticated_at = $5
          WHERE organization_id = $1 AND webauthn_registration_id = $2::uuid",
        &[
            organization_id.into(),
            registration_id.into(),
            sign_count.into(),
            backed_up.into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}

/// Flags a passkey whose counter did not move forward (WebAuthn §6.1.1): refused from then on.
pub fn flag_clone_suspected(organization_id: &str, registration_id: &str) -> MfaResult<()> {
    spi::execute(
        "UPDATE mfa.webauthn_registrations SET clone_suspected_at = coalesce(clone_suspected_at, $3)
          WHERE organization_id = $1 AND webauthn_registration_id = $2::uuid",
        &[
            organization_id.into(),
            registration_id.into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}

/// The member's passkeys as Stytch-like objects, oldest first (no key material).
pub fn registrations(member: &Member) -> MfaResult<Vec<serde_json::Value>> {
    spi::json_rows(
        include_str!("sql/webauthn_registrations_list.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
        ],
    )
}

/// Renames one of the member's passkeys; `false` when they have no such passkey.
pub fn rename_registration(member: &Member, registration_id: &str, name: &str) -> MfaResult<bool> {
    Ok(spi::execute(
        "UPDATE mfa.webauthn_registrations SET name = $4
          WHERE organization_id = $1 AND member_id = $2 AND webauthn_registration_id = $3::uuid
      RETURNING 1",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            registration_id.into(),
            name.into(),
        ],
    )? == 1)
}

/// Deletes one of the member's passkeys and uncounts it; the member's default method is cleared
/// when it was their last passkey. `false` when they have no such passkey.
pub fn delete_registration(member: &Member, registration_id: &str) -> MfaResult<bool> {
    let deleted = spi::typed_row(
        include_str!("sql/webauthn_registration_delete.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            registration_id.into(),
            spi::clock().into(),
        ],
        |row| row.get::<bool>(1),
    )?;
    Ok(deleted.flatten().unwrap_or(false))
}
