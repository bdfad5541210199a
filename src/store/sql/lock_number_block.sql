-- Serializes the sends to one block of 10,000 numbers: the block's row in mfa.sms_number_blocks,
-- created on its first send, locked until the end of the transaction. A block this statement
-- creates is not yet visible to its own SELECT: the caller runs it again, and meanwhile the
-- uncommitted insert makes every concurrent first send to the block wait.
--   $1 the block: an E.164 number but its last four digits
WITH known AS (
    INSERT INTO mfa.sms_number_blocks (number_block) VALUES ($1) ON CONFLICT DO NOTHING)
SELECT FROM mfa.sms_number_blocks WHERE number_block = $1 FOR UPDATE
