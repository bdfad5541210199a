//! Whether this database is part of a Citus cluster. There, a statement that locks or writes rows
//! must name one organization (it then runs on the one node that holds that organization's
//! shards); a question across organizations is asked without locks, and the work then goes
//! organization by organization.

use crate::error::{ErrorType, MfaError, MfaResult};
use crate::store::spi;

/// The `citus` extension is installed in this database. Citus runs only preloaded, and its library
/// defines `citus.version`: without that setting the catalog is not read (this runs in every call
/// that counts an attempt). A placeholder of that name a user SETs only sends the check on to the
/// catalog.
pub fn on_citus() -> bool {
    use pgrx::pg_sys;
    unsafe {
        !pg_sys::GetConfigOption(c"citus.version".as_ptr(), true, false).is_null()
            && pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid
    }
}

/// On Citus, refuses to count an attempt (or lift a lock) on a node that does not hold the
/// organization's shards. The attempt ledger lives in each node's shared memory: were a member's
/// attempts counted wherever the call ran (a call Citus delegates runs on the organization's
/// node, one it does not delegate on the coordinator), each node would grant its own allowance.
pub fn require_organization_here(organization_id: &str) -> MfaResult<()> {
    if !held_here(vec![organization_id.to_string()])?.is_empty() {
        return Ok(());
    }
    Err(MfaError::new(
        ErrorType::OrganizationNotOnThisNode,
        format!("Organization {organization_id}'s data is on another node of this Citus cluster: attempts are counted only there."),
    )
    .with_hint("Call the function on its own (SELECT mfa.totp_authenticate(...), nothing around it) so that Citus delegates it to that node; mfa.distribute() set the delegation up."))
}

/// Whether `function` (a signature, as `regprocedure` reads it) exists and `mfa.distribute()` has
/// made Citus delegate it by its organization.
pub fn delegated(function: &str) -> MfaResult<bool> {
    let delegated = spi::typed_row(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_object
                         WHERE classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                           AND objid = pg_catalog.to_regprocedure($1)
                           AND distribution_argument_index IS NOT NULL)",
        &[function.into()],
        |row| row.get::<bool>(1),
    )?;
    Ok(delegated.flatten() == Some(true))
}

/// Of `organizations`, those whose shards this node holds (`organizations_held_here.sql`); off
/// Citus, or before `mfa.distribute()`, all of them.
pub fn held_here(organizations: Vec<String>) -> MfaResult<Vec<String>> {
    if !on_citus() || organizations.is_empty() {
        return Ok(organizations);
    }
    spi::text_column(
        include_str!("sql/organizations_held_here.sql"),
        &[organizations.into()],
    )
}
