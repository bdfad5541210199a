-- Every organization's id, for the audit trail's retention on Citus (events_prune.sql, one
-- organization at a time; the recursive walk of events_prune_organizations.sql is not a query
-- Citus runs). A read of every shard, without locks.
SELECT organization_id FROM mfa.organizations
