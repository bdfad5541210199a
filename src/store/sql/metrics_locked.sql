-- mfa.metrics(): the members locked at $2 (the clock) as the attempt ledger's writers recorded them
-- (within milliseconds of each lock); with $1 one row per organization that has any, else one row
-- (organization_id NULL; none when nobody is locked). Through member_lockouts_locked: only members
-- with a lock are read.
SELECT CASE WHEN $1 THEN organization_id END AS organization_id, count(*) AS locked
  FROM mfa.member_lockouts
 WHERE lock_expires_at > $2
 GROUP BY 1
 ORDER BY 1
