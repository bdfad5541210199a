//! Statements of SMS sending.

use crate::store::spi;
use crate::error::MfaResult;

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
