//! Statements of keys: the per-database keys, which secrets a key covers, and the re-encryption
//! of a batch (key rotation).

use crate::error::MfaResult;
use crate::store::{cluster, grouped_by, spi};
use pgrx::datum::DatumWithOid;

/// The per-database master keys (only the one whose fingerprint is `only`, when given), oldest
/// first.
pub fn database_keys(only: Option<&str>) -> MfaResult<Vec<Vec<u8>>> {
    let stored = spi::typed_rows(
        "SELECT key FROM mfa.database_keys WHERE $1::text IS NULL OR key_id = $1
          ORDER BY created_at, key_id",
        &[only.into()],
        |row| row.get::<Vec<u8>>(1),
    )?;
    Ok(stored.into_iter().flatten().collect())
}

/// Stores a new per-database master key under its fingerprint `key_id`.
pub fn insert_database_key(key_id: &str, master: &[u8]) -> MfaResult<()> {
    spi::execute(
        "INSERT INTO mfa.database_keys (key_id, key) VALUES ($1, decode($2, 'hex'))
         ON CONFLICT DO NOTHING",
        &[
            key_id.into(),
            data_encoding::HEXLOWER.encode(master).as_str().into(),
        ],
    )?;
    Ok(())
}

/// One key's line of `mfa.encryption_keys()`.
pub struct KeyUsage {
    pub key_id: Option<String>,
    pub source: String,
    pub encrypts: bool,
    pub totp_secrets: i64,
    pub queued_sms_codes: i64,
    pub sms_code_hashes: i64,
    pub recovery_code_hashes: i64,
}

/// `known`: fingerprint and source of every known key, the encrypting one first.
pub fn usage(known: &[(String, &'static str)]) -> MfaResult<Vec<KeyUsage>> {
    let ids: Vec<String> = known.iter().map(|(id, _)| id.clone()).collect();
    let sources: Vec<String> = known.iter().map(|(_, s)| s.to_string()).collect();
    spi::typed_rows(
        include_str!("sql/key_usage.sql"),
        &[ids.into(), sources.into()],
        |row| {
            Ok(KeyUsage {
                key_id: row.get::<String>(1)?,
                source: row.get::<String>(2)?.unwrap_or_default(),
                encrypts: row.get::<bool>(3)?.unwrap_or(false),
                totp_secrets: row.get::<i64>(4)?.unwrap_or(0),
                queued_sms_codes: row.get::<i64>(5)?.unwrap_or(0),
                sms_code_hashes: row.get::<i64>(6)?.unwrap_or(0),
                recovery_code_hashes: row.get::<i64>(7)?.unwrap_or(0),
            })
        },
    )
}

/// A secret written under another key than the encrypting one, locked for re-encryption:
/// organization, member, the row's own id (registration or message), the ciphertext, and the
/// message's phone number (outbox only).
pub struct StaleSecret {
    pub organization_id: String,
    pub member_id: String,
    pub row_id: String,
    pub ciphertext: Vec<u8>,
    pub phone_number: Option<String>,
}

/// The two kinds of encrypted secret.
#[derive(Clone, Copy)]
pub enum Secrets {
    TotpSecrets,
    QueuedSmsCodes,
}

/// The statements of `Secrets` that lock or write: each for every organization (`""`) and for one
/// (Citus), with the filter that names it written where the statement is made.
macro_rules! stale_totp_secrets {
    ($filter:literal) => {
        concat!(
            "SELECT organization_id, member_id, totp_registration_id::text, secret_ciphertext, NULL::text
               FROM mfa.totp_registrations
              WHERE substring(secret_ciphertext FROM 2 FOR 8) <> decode($1, 'hex')",
            $filter,
            "
              LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
        )
    };
}
macro_rules! stale_sms_codes {
    ($filter:literal) => {
        concat!(
            "SELECT organization_id, member_id, message_id::text, code_ciphertext, phone_number
               FROM mfa.sms_outbox
              WHERE code_ciphertext IS NOT NULL
                AND substring(code_ciphertext FROM 2 FOR 8) <> decode($1, 'hex')",
            $filter,
            "
              LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
        )
    };
}
macro_rules! reencrypt_totp_secrets {
    ($filter:literal) => {
        concat!(
            "UPDATE mfa.totp_registrations t SET secret_ciphertext = u.ciphertext
               FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(organization_id, row_id, ciphertext)
              WHERE t.organization_id = u.organization_id AND t.totp_registration_id = u.row_id::uuid",
            $filter
        )
    };
}
macro_rules! reencrypt_sms_codes {
    ($filter:literal) => {
        concat!(
            "UPDATE mfa.sms_outbox o SET code_ciphertext = u.ciphertext
               FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(organization_id, row_id, ciphertext)
              WHERE o.organization_id = u.organization_id AND o.message_id = u.row_id::bigint",
            $filter
        )
    };
}

impl Secrets {
    /// Rows a login or a worker holds are skipped (SKIP LOCKED) and taken by a later batch.
    fn select(self) -> &'static str {
        match self {
            Secrets::TotpSecrets => stale_totp_secrets!(""),
            Secrets::QueuedSmsCodes => stale_sms_codes!(""),
        }
    }

    fn update(self) -> &'static str {
        match self {
            Secrets::TotpSecrets => reencrypt_totp_secrets!(""),
            Secrets::QueuedSmsCodes => reencrypt_sms_codes!(""),
        }
    }

    /// On Citus, where a locking statement must name one organization: the organizations with
    /// secrets of this kind to re-encrypt (a scan without locks), and `select` and `update` for
    /// one of them (`$3` and `$4`).
    fn organizations(self) -> &'static str {
        match self {
            Secrets::TotpSecrets => {
                "SELECT DISTINCT organization_id FROM mfa.totp_registrations
                  WHERE substring(secret_ciphertext FROM 2 FOR 8) <> decode($1, 'hex') LIMIT $2"
            }
            Secrets::QueuedSmsCodes => {
                "SELECT DISTINCT organization_id FROM mfa.sms_outbox
                  WHERE code_ciphertext IS NOT NULL
                    AND substring(code_ciphertext FROM 2 FOR 8) <> decode($1, 'hex') LIMIT $2"
            }
        }
    }

    fn for_one_organization(self) -> (&'static str, &'static str) {
        match self {
            Secrets::TotpSecrets => (
                stale_totp_secrets!("\n                AND organization_id = $3::text"),
                reencrypt_totp_secrets!("\n                AND t.organization_id = $4::text"),
            ),
            Secrets::QueuedSmsCodes => (
                stale_sms_codes!("\n                AND organization_id = $3::text"),
                reencrypt_sms_codes!("\n                AND o.organization_id = $4::text"),
            ),
        }
    }

    fn remaining(self) -> &'static str {
        match self {
            Secrets::TotpSecrets => {
                "SELECT count(*) FROM mfa.totp_registrations
                  WHERE substring(secret_ciphertext FROM 2 FOR 8) <> decode($1, 'hex')"
            }
            Secrets::QueuedSmsCodes => {
                "SELECT count(*) FROM mfa.sms_outbox
                  WHERE code_ciphertext IS NOT NULL
                    AND substring(code_ciphertext FROM 2 FOR 8) <> decode($1, 'hex')"
            }
        }
    }
}

/// Up to `limit` secrets of `kind` not under `current_key_id`, locked until the end of the
/// transaction; on Citus, organization by organization.
pub fn lock_stale(kind: Secrets, current_key_id: &str, limit: i64) -> MfaResult<Vec<StaleSecret>> {
    if !cluster::on_citus() {
        return lock_stale_in(kind.select(), current_key_id, limit, None);
    }
    let organizations = spi::typed_rows(
        kind.organizations(),
        &[current_key_id.into(), limit.into()],
        |row| row.get::<String>(1).map(Option::unwrap_or_default),
    )?;
    let mut stale = Vec::new();
    for organization in organizations {
        let room = limit - stale.len() as i64;
        if room <= 0 {
            break;
        }
        let select = kind.for_one_organization().0;
        stale.extend(lock_stale_in(
            select,
            current_key_id,
            room,
            Some(&organization),
        )?);
    }
    Ok(stale)
}

fn lock_stale_in(
    statement: &str,
    current_key_id: &str,
    limit: i64,
    organization: Option<&str>,
) -> MfaResult<Vec<StaleSecret>> {
    let mut args: Vec<DatumWithOid> = vec![current_key_id.into(), limit.into()];
    if let Some(organization) = organization {
        args.push(organization.into());
    }
    spi::typed_rows(statement, &args, |row| {
        Ok(StaleSecret {
            organization_id: row.get::<String>(1)?.unwrap_or_default(),
            member_id: row.get::<String>(2)?.unwrap_or_default(),
            row_id: row.get::<String>(3)?.unwrap_or_default(),
            ciphertext: row.get::<Vec<u8>>(4)?.unwrap_or_default(),
            phone_number: row.get::<String>(5)?,
        })
    })
}

/// Writes the new ciphertexts of the secrets `lock_stale` returned, in their order; on Citus,
/// organization by organization.
pub fn write_reencrypted(
    kind: Secrets,
    secrets: &[StaleSecret],
    ciphertexts: Vec<Vec<u8>>,
) -> MfaResult<usize> {
    let pairs: Vec<(&StaleSecret, Vec<u8>)> = secrets.iter().zip(ciphertexts).collect();
    if !cluster::on_citus() {
        return write_in(kind.update(), None, pairs);
    }
    let mut written = 0;
    for (organization, group) in grouped_by(pairs, |(s, _)| &s.organization_id) {
        written += write_in(kind.for_one_organization().1, Some(&organization), group)?;
    }
    Ok(written)
}

fn write_in(
    statement: &str,
    organization: Option<&str>,
    pairs: Vec<(&StaleSecret, Vec<u8>)>,
) -> MfaResult<usize> {
    let organizations: Vec<String> = pairs
        .iter()
        .map(|(s, _)| s.organization_id.clone())
        .collect();
    let ids: Vec<String> = pairs.iter().map(|(s, _)| s.row_id.clone()).collect();
    let ciphertexts: Vec<Vec<u8>> = pairs.into_iter().map(|(_, c)| c).collect();
    let mut args: Vec<DatumWithOid> = vec![organizations.into(), ids.into(), ciphertexts.into()];
    if let Some(organization) = organization {
        args.push(organization.into());
    }
    spi::execute(statement, &args)
}

/// Secrets of `kind` still under another key than `current_key_id`.
pub fn remaining(kind: Secrets, current_key_id: &str) -> MfaResult<i64> {
    Ok(
        spi::typed_row(kind.remaining(), &[current_key_id.into()], |row| {
            row.get::<i64>(1)
        })?
        .flatten()
        .unwrap_or(0),
    )
}
