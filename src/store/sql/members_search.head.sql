-- An organization's members as members_search reports them: the columns of member_read.sql (the
-- member, their organization's policy, their lockout row, their authenticator app; the TOTP
-- secret's column is NULL: a report never reads a secret) for the members after $2 that pass the
-- filters, as a CTE that members_search.page.sql pages through (keyset on member_id, the primary
-- key's order) and members_search.count.sql counts. A NULL filter does not filter: the statement
-- is planned for its arguments at each call.
--   $1 organization_id   $2 the member id the page follows ('' for the first page, and to count)
--   $3 members to return   $4 the clock   $5 mfa_enrolled   $6 has_totp (an active authenticator
--   app)   $7 has_phone (a verified phone)   $8 locked (the durable lockout row: the attempt
--   ledger's worker writes it milliseconds after the ledger)   $9 breakglass   $10 no_factor
--   $11 last_mfa_before   $12 last_mfa_after   $13 the event types of a successful second factor
--   $14 has_passkey   $15 the types of second factors in a login's story
-- A member's last MFA is their newest successful second-factor event in the audit trail (a
-- factor's own, or a login's whose story holds a second factor): before
-- $11 means older than $11 or none (never, or older than the trail keeps); after $12 means at or
-- after it. The factor columns (factor_*) are where a new factor goes, and no_factor
-- reads them all.
WITH matching AS (
    SELECT m.organization_id, m.member_id, m.mfa_enrolled, m.mfa_phone_number, m.mfa_phone_country,
           m.mfa_phone_number_verified, m.phone_id::text AS phone_id, m.default_mfa_method,
           m.is_breakglass, m.created_at, m.updated_at, m.webauthn_registrations,
           o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods, o.remember_device_days,
           o.created_at AS organization_created_at, o.updated_at AS organization_updated_at,
           l.failed_attempts, l.failure_window_started_at, l.lock_created_at, l.lock_expires_at,
           l.lock_count,
           t.totp_registration_id, NULL::bytea AS secret_ciphertext, t.totp_active, t.totp_expired,
           t.last_used_step,
           NULL::bytea AS sms_code_hash, NULL::text AS sms_code_phone_number,
           NULL::bool AS sms_code_expired, NULL::bool AS sms_code_used, NULL::text AS sms_code_key_id
      FROM mfa.members m
      JOIN mfa.organizations o ON o.organization_id = $1
      LEFT JOIN mfa.member_lockouts l
             ON l.organization_id = $1 AND l.member_id = m.member_id AND l.member_id > $2
      LEFT JOIN LATERAL (
           SELECT totp_registration_id::text AS totp_registration_id,
                  status = 'active' AS totp_active,
                  coalesce(expires_at <= $4, false) AS totp_expired, last_used_step
             FROM mfa.totp_registrations
            WHERE organization_id = $1 AND member_id = m.member_id AND member_id > $2) t ON true
      CROSS JOIN LATERAL (
           SELECT coalesce(t.totp_active, false) AS factor_totp,
                  m.mfa_phone_number_verified AS factor_phone,
                  m.webauthn_registrations > 0 AS factor_passkey) f
      -- The member's last MFA, from their newest event that tells of a second factor (a probe of
      -- events_member), only when a filter asks: a factor's own success happened when it was
      -- written; a login's story says when each of its factors was proven (a login given up is
      -- written when its token dies, minutes or days later).
      LEFT JOIN LATERAL (
           SELECT coalesce(
                    (SELECT max(a.at::timestamptz)
                       FROM jsonb_array_elements_text(e.details -> 'factors')
                            WITH ORDINALITY story (type, n)
                       JOIN jsonb_array_elements_text(e.details -> 'authenticated_at')
                            WITH ORDINALITY a (at, n) USING (n)
                      WHERE story.type = ANY ($15)),
                    e.occurred_at) AS at
             FROM mfa.events e
            WHERE ($11::timestamptz IS NOT NULL OR $12::timestamptz IS NOT NULL)
              AND e.organization_id = $1 AND e.member_id = m.member_id
              AND e.event_type = ANY ($13)
              AND (e.details @> '{"outcome": "success"}' OR e.details -> 'factors' ?| $15)
            ORDER BY e.event_id DESC
            LIMIT 1) last_mfa ON true
     WHERE m.organization_id = $1 AND m.member_id > $2
       AND ($5::boolean IS NULL OR m.mfa_enrolled = $5)
       AND ($6::boolean IS NULL OR f.factor_totp = $6)
       AND ($7::boolean IS NULL OR f.factor_phone = $7)
       AND ($8::boolean IS NULL OR coalesce(l.lock_expires_at > $4, false) = $8)
       AND ($9::boolean IS NULL OR m.is_breakglass = $9)
       AND ($14::boolean IS NULL OR f.factor_passkey = $14)
       AND ($10::boolean IS NULL OR NOT (f.factor_totp OR f.factor_phone OR f.factor_passkey) = $10)
       -- The last MFA (last_mfa above), only when asked.
       AND ($11::timestamptz IS NULL OR coalesce(last_mfa.at < $11, true))
       AND ($12::timestamptz IS NULL OR last_mfa.at >= $12))
