//! The SMS outbox as stored: claims with receipts, the finishing reports of delivery workers, and
//! the workers' organization bindings.

use crate::core::sms::{code_pattern, CODE_PLACEHOLDER};
use crate::error::MfaResult;
use crate::store::{cluster, spi};
use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use std::sync::LazyLock;

/// The organizations whose messages the calling worker may handle: `None` for a worker bound to
/// none (it serves every organization). A worker is bound by `sms_worker_grant` to its login role
/// or to a role that it (or the role it switched to) is a member of, so switching to an unbound
/// role does not escape the binding. A binding names a role by oid and name: a role matching
/// either is bound, but only one matching both is served the organization (a renamed role, or a
/// new role of a dropped one's name, is bound to nothing until granted again).
pub fn worker_organizations() -> MfaResult<Option<Vec<String>>> {
    let bound = spi::typed_row(
        "WITH callers AS (
             SELECT oid FROM pg_catalog.pg_roles
              WHERE rolname IN (session_user, $1::name) AND NOT rolsuper),
         bound AS (
             SELECT g.organization_id, r.rolname IS NOT DISTINCT FROM g.role_name AS served
               FROM mfa.sms_worker_grants g LEFT JOIN pg_catalog.pg_roles r ON r.oid = g.role_oid
              WHERE EXISTS (SELECT FROM callers c, pg_catalog.pg_roles b
                             WHERE (b.oid = g.role_oid OR b.rolname = g.role_name)
                               AND pg_catalog.pg_has_role(c.oid, b.oid, 'MEMBER')))
         SELECT coalesce(array_agg(DISTINCT organization_id ORDER BY organization_id) FILTER (WHERE served), '{}')
           FROM bound HAVING count(*) > 0",
        &[spi::outer_user().as_str().into()],
        |row| row.get::<Vec<String>>(1),
    )?;
    Ok(bound.flatten())
}

/// Retires the pending messages whose code expired, erasing their code: of every organization,
/// or on Citus of `organization` only (the claim goes organization by organization there).
pub fn retire_expired(organization: Option<&str>) -> MfaResult<()> {
    const ALL: &str = concat!(
        include_str!("sql/outbox_retire_expired.head.sql"),
        include_str!("sql/outbox_retire_expired.tail.sql")
    );
    const ONE: &str = concat!(
        include_str!("sql/outbox_retire_expired.head.sql"),
        "               AND organization_id = $3::text\n",
        include_str!("sql/outbox_retire_expired.tail.sql")
    );
    let mut args: Vec<DatumWithOid> = vec![code_pattern().into(), CODE_PLACEHOLDER.into()];
    let statement = match organization {
        None => ALL,
        Some(organization) => {
            args.push(organization.into());
            ONE
        }
    };
    spi::execute(statement, &args)?;
    Ok(())
}

/// Which organizations' messages a claim reads.
pub enum ClaimScope<'a> {
    All,
    One(&'a str),
    Several(&'a [String]),
}

/// The claim of each scope: `outbox_claim.head.sql`, the scope's filter, `outbox_claim.tail.sql`.
static CLAIM_STATEMENTS: LazyLock<[String; 3]> = LazyLock::new(|| {
    [
        concat!(
            include_str!("sql/outbox_claim.head.sql"),
            include_str!("sql/outbox_claim.tail.sql")
        )
        .to_string(),
        concat!(
            include_str!("sql/outbox_claim.head.sql"),
            "                   AND organization_id = $4::text\n",
            include_str!("sql/outbox_claim.tail.sql")
        )
        .to_string(),
        concat!(
            include_str!("sql/outbox_claim.head.sql"),
            "                   AND organization_id = ANY($4::text[])\n",
            include_str!("sql/outbox_claim.tail.sql")
        )
        .to_string(),
    ]
});

/// A claimed message, its code still encrypted.
pub struct Claimed {
    pub message_id: i64,
    pub organization_id: String,
    pub member_id: String,
    pub phone_number: String,
    pub country_code: String,
    pub locale: String,
    /// The text with the code's placeholder.
    pub body: String,
    pub attempts: i32,
    pub created_at: TimestampWithTimeZone,
    pub expires_at: TimestampWithTimeZone,
    /// Which of the receipts (0-based) this message was claimed with.
    pub receipt_index: usize,
    /// `None` for a message queued by 0.1.0, whose code is in the body.
    pub code_ciphertext: Option<Vec<u8>>,
}

/// Claims up to `batch_size` messages of `scope`, hidden for `visibility_timeout`, one per
/// receipt hash; messages whose code expired are retired first (never handed out). On Citus a
/// claim of several organizations goes organization by organization, oldest message first.
pub fn claim(
    batch_size: i32,
    visibility_timeout: Interval,
    receipt_hashes: Vec<Vec<u8>>,
    scope: ClaimScope,
) -> MfaResult<Vec<Claimed>> {
    if matches!(scope, ClaimScope::One(_)) || !cluster::on_citus() {
        retire_expired(match scope {
            ClaimScope::One(organization) => Some(organization),
            _ => None,
        })?;
        return claim_in(batch_size, visibility_timeout, receipt_hashes, scope);
    }
    let mut claimed = Vec::new();
    for organization in organizations_with_pending(batch_size, &scope)? {
        let taken = claimed.len();
        if taken == receipt_hashes.len() {
            break;
        }
        retire_expired(Some(&organization))?;
        let mut more = claim_in(
            (receipt_hashes.len() - taken) as i32,
            visibility_timeout,
            receipt_hashes[taken..].to_vec(),
            ClaimScope::One(&organization),
        )?;
        more.iter_mut().for_each(|m| m.receipt_index += taken);
        claimed.append(&mut more);
    }
    Ok(claimed)
}

/// Up to `limit` organizations of `scope` with messages deliverable now (pending, visible,
/// unexpired), the one with the oldest first, read without locks (a multi-shard scan; Citus
/// refuses one that locks). An organization whose waiting messages have all expired would take a
/// place and give nothing: its expired messages are retired with its next claim.
fn organizations_with_pending(limit: i32, scope: &ClaimScope) -> MfaResult<Vec<String>> {
    let mut sql = String::from(
        "SELECT organization_id FROM mfa.sms_outbox
          WHERE status = 'pending' AND visible_at <= statement_timestamp()
            AND expires_at > statement_timestamp()",
    );
    let mut args: Vec<DatumWithOid> = vec![(limit as i64).into()];
    if let ClaimScope::Several(organizations) = scope {
        sql.push_str(" AND organization_id = ANY($2::text[])");
        args.push(organizations.to_vec().into());
    }
    sql.push_str(" GROUP BY organization_id ORDER BY min(visible_at) LIMIT $1");
    spi::typed_rows(&sql, &args, |row| {
        row.get::<String>(1).map(Option::unwrap_or_default)
    })
}

fn claim_in(
    batch_size: i32,
    visibility_timeout: Interval,
    receipt_hashes: Vec<Vec<u8>>,
    scope: ClaimScope,
) -> MfaResult<Vec<Claimed>> {
    let mut args: Vec<DatumWithOid> = vec![
        (batch_size as i64).into(),
        visibility_timeout.into(),
        receipt_hashes.into(),
    ];
    let [all, one, several] = &*CLAIM_STATEMENTS;
    let statement = match scope {
        ClaimScope::All => all,
        ClaimScope::One(organization) => {
            args.push(organization.into());
            one
        }
        ClaimScope::Several(organizations) => {
            args.push(organizations.to_vec().into());
            several
        }
    };
    spi::typed_rows(statement, &args, |row| {
        let text = |name: &str| {
            row.get_by_name::<String, _>(name)
                .map(Option::unwrap_or_default)
        };
        let time = |name: &str| {
            row.get_by_name::<TimestampWithTimeZone, _>(name)
                .map(|t| t.expect("NOT NULL"))
        };
        Ok(Claimed {
            message_id: row.get_by_name::<i64, _>("message_id")?.unwrap_or_default(),
            organization_id: text("organization_id")?,
            member_id: text("member_id")?,
            phone_number: text("phone_number")?,
            country_code: text("country_code")?,
            locale: text("locale")?,
            body: text("body")?,
            attempts: row.get_by_name::<i32, _>("attempts")?.unwrap_or_default(),
            created_at: time("created_at")?,
            expires_at: time("expires_at")?,
            receipt_index: row.get_by_name::<i64, _>("position")?.unwrap_or(1) as usize - 1,
            code_ciphertext: row.get_by_name::<Vec<u8>, _>("code_ciphertext")?,
        })
    })
}

/// `outbox_complete` and `outbox_fail`, each also with its organization named (Citus) between
/// its head and its tail.
static FINISH_STATEMENTS: LazyLock<[String; 4]> = LazyLock::new(|| {
    [
        concat!(
            include_str!("sql/outbox_complete.head.sql"),
            include_str!("sql/outbox_complete.tail.sql")
        )
        .to_string(),
        concat!(
            include_str!("sql/outbox_complete.head.sql"),
            "       AND organization_id = $9::text\n",
            include_str!("sql/outbox_complete.tail.sql")
        )
        .to_string(),
        concat!(
            include_str!("sql/outbox_fail.head.sql"),
            include_str!("sql/outbox_fail.tail.sql")
        )
        .to_string(),
        concat!(
            include_str!("sql/outbox_fail.head.sql"),
            "       AND organization_id = $11::text\n",
            include_str!("sql/outbox_fail.tail.sql")
        )
        .to_string(),
    ]
});

/// The organization of the message held with the receipt whose hash is `receipt_hash`, read
/// without a lock (on Citus: across shards, to name the one that holds it).
fn organization_holding(message_id: i64, receipt_hash: &[u8]) -> MfaResult<Option<String>> {
    Ok(spi::typed_row(
        "SELECT organization_id FROM mfa.sms_outbox WHERE message_id = $1 AND receipt_hash = $2",
        &[message_id.into(), receipt_hash.to_vec().into()],
        |row| row.get::<String>(1),
    )?
    .flatten())
}

/// A worker's report on a message it holds.
pub enum Report<'a> {
    /// The provider accepted it.
    Sent {
        provider_message_id: Option<&'a str>,
    },
    /// Delivery failed; `retry` asks for another attempt, up to `max_attempts`.
    Failed {
        error: Option<&'a str>,
        retry: bool,
        max_attempts: i32,
    },
}

/// Applies `report` to message `message_id` held with the receipt whose hash is `receipt_hash`,
/// by a worker serving `scope` (`None`: all), with its audit event; returns the message's status
/// and attempts, `None` when the message is not held with that receipt.
pub fn finish(
    request_id: &str,
    scope: Option<Vec<String>>,
    message_id: i64,
    receipt_hash: Vec<u8>,
    report: Report,
) -> MfaResult<Option<(String, i32)>> {
    // On Citus the statement names the message's organization, found first without a lock.
    let organization = if cluster::on_citus() {
        match organization_holding(message_id, &receipt_hash)? {
            Some(organization) => Some(organization),
            None => return Ok(None),
        }
    } else {
        None
    };
    let mut args: Vec<DatumWithOid> = vec![
        request_id.into(),
        code_pattern().into(),
        CODE_PLACEHOLDER.into(),
        scope.into(),
        message_id.into(),
        receipt_hash.into(),
    ];
    let [complete, complete_scoped, fail, fail_scoped] = &*FINISH_STATEMENTS;
    let (statement, scoped) = match report {
        Report::Sent {
            provider_message_id,
        } => {
            args.extend([provider_message_id.into(), spi::clock().into()]);
            (complete, complete_scoped)
        }
        Report::Failed {
            error,
            retry,
            max_attempts,
        } => {
            args.extend([
                error.into(),
                retry.into(),
                max_attempts.into(),
                spi::clock().into(),
            ]);
            (fail, fail_scoped)
        }
    };
    let statement = match organization {
        Some(organization) => {
            args.push(organization.into());
            scoped
        }
        None => statement,
    };
    spi::typed_row(statement, &args, |row| {
        Ok((
            row.get_by_name::<String, _>("status")?.unwrap_or_default(),
            row.get_by_name::<i32, _>("attempts")?.unwrap_or_default(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use crate::store::without_comments as code;
    #[test]
    fn each_claim_statement_has_its_filter() {
        let [all, one, several] = &*super::CLAIM_STATEMENTS;
        assert!(!code(all).contains("$4"));
        assert!(code(one).contains("AND organization_id = $4::text"));
        assert!(code(several).contains("AND organization_id = ANY($4::text[])"));
    }
}
