-- A Citus coordinator's attempt ledger writer hands the records of organization $1 ($2, a JSON
-- array) to the node holding it: mfa.distribute() made Citus delegate the call there, where they
-- are written in one local transaction, committed in one phase with the caller's (a transaction
-- the coordinator plans itself reaches the node in two phases, and a node where the events'
-- trigger queued a NOTIFY cannot prepare).
SELECT mfa._attempt_ledger_write($1, $2::jsonb)
