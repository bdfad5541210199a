-- What an SMS send is checked against: the stored allowlist (NULL while none was set), and the
-- recent sends of the member, to the number and to its block of 10,000 numbers. Runs after the
-- block's lock is granted (lock_number_block.sql), so the counts see every send committed before.
-- The guards of a number and of its block count the organization's own sends and, for a number
-- the member has not proven, every organization's sends to unproven numbers: a member of another
-- organization who links someone else's number can use up the unproven budget, never the budget
-- of the number's owner, whose number is proven.
--   $1 the number (E.164)   $2 its block   $3 the minimum interval per member, in seconds
--   $4 organization_id   $5 member_id   $6 the number is the member's own, verified
SELECT (SELECT array_agg(country_code ORDER BY country_code) FROM mfa.country_code_allowlist)
           AS allowlist,
       (SELECT count(*) FROM mfa.sms_outbox
         WHERE organization_id = $4 AND member_id = $5
           AND created_at > statement_timestamp() - interval '1 hour') AS member_hour,
       (SELECT count(*) FROM mfa.sms_outbox
         WHERE organization_id = $4 AND member_id = $5
           AND created_at > statement_timestamp() - make_interval(secs => $3)) AS member_recent,
       (SELECT count(*) FROM mfa.sms_outbox
         WHERE phone_number = $1 AND created_at > statement_timestamp() - interval '1 hour'
           AND (organization_id = $4 OR NOT ($6 OR to_verified_number))) AS number_hour,
       (SELECT count(*) FROM mfa.sms_outbox
         WHERE rate_limit_prefix = $2 AND created_at > statement_timestamp() - interval '1 hour'
           AND (organization_id = $4 OR NOT ($6 OR to_verified_number))) AS prefix_hour
