//! Whether this database is part of a Citus cluster. There, a statement that locks or writes rows
//! must name one organization (it then runs on the one node that holds that organization's
//! shards); a question across organizations is asked without locks, and the work then goes
//! organization by organization.

/// The `citus` extension is installed in this database (a catalog lookup, no statement).
pub fn on_citus() -> bool {
    unsafe { pgrx::pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pgrx::pg_sys::InvalidOid }
}
