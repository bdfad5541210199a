//! What outlives a call: the `mfa.*` settings and their hooks, the server's master keys in shared
//! memory, and the attempt ledger (shared memory, its background writers). No SQL here (`store`
//! has it) and no flow: `flow` joins this and `store`.

pub mod counters;
pub mod key_ring;
pub mod ledger;
pub mod settings;
