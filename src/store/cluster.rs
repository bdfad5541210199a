//! Whether this database is part of a Citus cluster. There, a statement that locks or writes rows
//! must name one organization (it then runs on the one node that holds that organization's
//! shards); a question across organizations is asked without locks, and the work then goes
//! organization by organization.

use crate::error::{ErrorType, MfaError, MfaResult};
use crate::store::spi;

/// The `citus` extension is installed in this database (a catalog lookup, no statement).
pub fn on_citus() -> bool {
    unsafe { pgrx::pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pgrx::pg_sys::InvalidOid }
}

/// On Citus, refuses to count an attempt (or lift a lock) on a node that does not hold the
/// organization's shards. The attempt ledger lives in each node's shared memory: were a member's
/// attempts counted wherever the call ran (a call Citus delegates runs on the organization's
/// node, one it does not delegate on the coordinator), each node would grant its own allowance.
pub fn require_organization_here(organization_id: &str) -> MfaResult<()> {
    if !on_citus() {
        return Ok(());
    }
    let here = spi::typed_row(
        "SELECT CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                                       WHERE logicalrelid = 'mfa.members'::regclass)
                     THEN true
                     ELSE EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
                                   WHERE p.shardid = pg_catalog.get_shard_id_for_distribution_column('mfa.members', $1)
                                     AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group))
                END",
        &[organization_id.into()],
        |row| row.get::<bool>(1),
    )?;
    if here.flatten() == Some(true) {
        return Ok(());
    }
    Err(MfaError::new(
        ErrorType::OrganizationNotOnThisNode,
        format!("Organization {organization_id}'s data is on another node of this Citus cluster: attempts are counted only there."),
    )
    .with_hint("Call the function on its own (SELECT mfa.totp_authenticate(...), nothing around it) so that Citus delegates it to that node; mfa.distribute() set the delegation up."))
}

/// `statement` for one organization on Citus: each `-- :organization_filter` line becomes
/// `AND organization_id = $N::text`, and each `-- :organization_filter(alias)` line
/// `AND alias.organization_id = $N::text`, with `parameter` the N.
pub fn for_one_organization(statement: &str, parameter: usize) -> String {
    const MARK: &str = "-- :organization_filter";
    let mut scoped = String::with_capacity(statement.len() + 64);
    let mut rest = statement;
    while let Some(at) = rest.find(MARK) {
        scoped.push_str(&rest[..at]);
        rest = &rest[at + MARK.len()..];
        let alias = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((alias, after)) => {
                rest = after;
                format!("{alias}.")
            }
            None => String::new(),
        };
        scoped.push_str(&format!("AND {alias}organization_id = ${parameter}::text"));
    }
    scoped.push_str(rest);
    scoped
}

#[cfg(test)]
mod tests {
    use super::for_one_organization;

    #[test]
    fn every_mark_becomes_a_filter_on_the_organization() {
        let statement = "SELECT 1 FROM a d\n WHERE x\n -- :organization_filter(d)\n AND y -- :organization_filter\n";
        assert_eq!(
            for_one_organization(statement, 7),
            "SELECT 1 FROM a d\n WHERE x\n AND d.organization_id = $7::text\n AND y AND organization_id = $7::text\n"
        );
        assert_eq!(for_one_organization("SELECT 1", 2), "SELECT 1");
    }
}
