-- Reports for administrators (role mfa_admin): members_search, an organization's members by MFA
-- state a page at a time, and events_search, its audit trail newest first.
\pset null '∅'
\set VERBOSITY terse
SELECT mfa.organization_upsert('dunder', 'REQUIRED_FOR_ALL') ->> 'mfa_policy' AS policy;
SELECT count(mfa.member_upsert('dunder', m)) AS members
  FROM unnest(ARRAY['angela', 'dwight', 'jim', 'kevin', 'meredith', 'oscar', 'pam', 'stanley']) m;
-- dwight proves an imported authenticator app (the success enrolls him: REQUIRED_FOR_ALL).
SELECT mfa.totp_migrate('dunder', 'dwight', 'JBSWY3DPEHPK3PXP') ->> 'status_code' AS migrated;
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('dunder', 'dwight', :'code') ->> 'status_code' AS dwight_totp;
-- jim proves his phone with an SMS code.
SELECT mfa.otp_sms_send('dunder', 'jim', '+14155550123') ->> 'status_code' AS sent;
SELECT substring(body from '[0-9]{6}') AS sms_code, id, receipt
  FROM mfa.sms_outbox_claim(10, '30 seconds', 'dunder') \gset msg_
SELECT mfa.otp_sms_authenticate('dunder', 'jim', :'msg_sms_code') ->> 'status_code' AS jim_sms;
-- kevin has a number he never proved; oscar is breakglass.
SELECT mfa.member_upsert('dunder', 'kevin', '+14155550124') ->> 'mfa_phone_number_verified' AS kevin_verified;
SELECT mfa.member_upsert('dunder', 'oscar', is_breakglass => true) ->> 'is_breakglass' AS oscar_breakglass;
-- pam has an authenticator app and is locked out by three wrong codes (the lock's durable row is
-- written by the attempt ledger's worker, a moment later: the locked filter reads it).
SELECT mfa.totp_migrate('dunder', 'pam', 'KRSXG5CTMVRXEZLU') ->> 'status_code' AS migrated;
SET mfa.lock_threshold = 3;
SELECT mfa.totp_authenticate('dunder', 'pam', c) ->> 'error_type' AS pam_attempts
  FROM unnest(ARRAY['12345', 'abcdef', 'x']) c;
RESET mfa.lock_threshold;
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN EXISTS (SELECT FROM mfa.member_lockouts
                           WHERE organization_id = 'dunder' AND member_id = 'pam' AND lock_expires_at > now());
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-- Helpers of this file (temporary): the member ids a filter finds, and walks through every page.
CREATE FUNCTION pg_temp.ids(filter jsonb) RETURNS TABLE (member_ids text, total bigint) LANGUAGE sql AS $$
    SELECT string_agg(m ->> 'member_id', ', '), max((r -> 'results_metadata' ->> 'total')::bigint)
      FROM mfa.members_search('dunder', filter, page_size => 1000) r,
           jsonb_array_elements(r -> 'members') m
$$;
CREATE FUNCTION pg_temp.walk(size integer) RETURNS TABLE (page integer, member_ids text, next_is_null boolean)
LANGUAGE plpgsql AS $$
DECLARE
    cursor text;
    answer jsonb;
BEGIN
    page := 0;
    LOOP
        page := page + 1;
        answer := mfa.members_search('dunder', '{}', cursor, size);
        SELECT string_agg(m ->> 'member_id', ', ') INTO member_ids FROM jsonb_array_elements(answer -> 'members') m;
        cursor := answer -> 'results_metadata' ->> 'next_cursor';
        next_is_null := cursor IS NULL;
        RETURN NEXT;
        EXIT WHEN cursor IS NULL;
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.event_walk() RETURNS TABLE (pages integer, events bigint, distinct_ids bigint, newest_first boolean)
LANGUAGE plpgsql AS $$
DECLARE
    cursor text;
    answer jsonb;
    ids bigint[] := '{}';
BEGIN
    pages := 0;
    LOOP
        pages := pages + 1;
        answer := mfa.events_search('dunder', '{}', cursor, 4);
        ids := ids || ARRAY(SELECT (e ->> 'event_id')::bigint FROM jsonb_array_elements(answer -> 'events') e);
        cursor := answer -> 'results_metadata' ->> 'next_cursor';
        EXIT WHEN cursor IS NULL;
    END LOOP;
    events := cardinality(ids);
    distinct_ids := (SELECT count(DISTINCT i) FROM unnest(ids) i);
    newest_first := ids = ARRAY(SELECT i FROM unnest(ids) i ORDER BY i DESC);
    RETURN NEXT;
END
$$;
SELECT count(*) AS dunder_events FROM mfa.events WHERE organization_id = 'dunder' \gset

CREATE ROLE dunder_admin LOGIN IN ROLE mfa_admin;
SET ROLE dunder_admin;

-- members_search: Stytch's member objects in member_id order, with the total that pass the filter
-- and the cursor of the next page (NULL on the last).
SELECT jsonb_pretty(mfa.members_search('dunder', page_size => 2)
                    #- '{members,0,created_at}' #- '{members,0,updated_at}'
                    #- '{members,1,created_at}' #- '{members,1,updated_at}' #- '{members,1,totp_registration_id}'
                    #- '{request_id}' #- '{results_metadata,next_cursor}') AS first_page;
-- Each filter, and their conjunction.
SELECT f AS filter, i.member_ids, i.total
  FROM unnest(ARRAY['{}', '{"mfa_enrolled": true}', '{"has_totp": true}', '{"has_phone": true}',
                    '{"has_phone": false}', '{"locked": true}', '{"breakglass": true}',
                    '{"no_factor": true}', '{"no_factor": false}',
                    '{"no_factor": true, "breakglass": false}',
                    '{"has_totp": true, "locked": false}', '{"locked": null}']::jsonb[]) f,
       pg_temp.ids(f) i;
-- The last MFA: the newest successful second factor in the audit trail (dwight and jim just now).
SELECT f.label AS filter, i.member_ids
  FROM (VALUES ('last_mfa_after an hour ago', jsonb_build_object('last_mfa_after', now() - interval '1 hour')),
               ('last_mfa_before an hour ago', jsonb_build_object('last_mfa_before', now() - interval '1 hour')),
               ('last_mfa_before 2000', '{"last_mfa_before": "2000-01-01T00:00:00Z"}'),
               ('last_mfa_after an hour ago, no phone', jsonb_build_object('last_mfa_after', now() - interval '1 hour', 'has_phone', false))) f (label, filter),
       pg_temp.ids(f.filter) i;
-- The member objects are the ones member_get answers with (pam's lock with its times), without
-- the organization object member_get gives beside them.
SELECT m ->> 'member_id' AS member, m ->> 'is_locked' AS is_locked,
       m ->> 'lock_expires_at' IS NOT NULL AS lock_expires_at, m ->> 'mfa_phone_number' AS phone,
       m = mfa.member_get('dunder', m ->> 'member_id') - 'organization' AS same_as_member_get
  FROM jsonb_array_elements(mfa.members_search('dunder', '{"has_totp": true}') -> 'members') m;

-- A walk through the pages: every member once, in order, then a NULL cursor.
SELECT * FROM pg_temp.walk(3);
SELECT * FROM pg_temp.walk(8);

-- What is refused (22023), and an organization that does not exist (P0002).
SELECT mfa.members_search('dunder', '{"is_locked": true}');
SELECT mfa.members_search('dunder', '{"locked": "yes"}');
SELECT mfa.members_search('dunder', '{"last_mfa_before": "last week"}');
SELECT mfa.members_search('dunder', '[]');
SELECT mfa.members_search('dunder', cursor => 'bm90IG91cnM');
SELECT mfa.members_search('dunder', cursor => mfa.events_search('dunder', page_size => 1) -> 'results_metadata' ->> 'next_cursor');
SELECT mfa.members_search('dunder', page_size => 0);
SELECT mfa.members_search('dunder', page_size => 1001);
SELECT mfa.members_search('');
SELECT mfa.members_search('vance');

-- events_search: newest first; filters by member, type (one or several) and time.
SELECT e ->> 'event_type' AS event_type, e ->> 'member_id' AS member, (e -> 'details') - 'totp_registration_id' AS details
  FROM jsonb_array_elements(mfa.events_search('dunder', '{"member_id": "pam"}') -> 'events') e;
-- (A success that makes a factor active says so: NOTIFY mfa_events tells listeners of those.)
SELECT e ->> 'member_id' AS member, e -> 'details' ->> 'outcome' AS outcome,
       e -> 'details' ->> 'factor_added' AS factor_added, e -> 'details' ->> 'lock_started' AS lock_started
  FROM jsonb_array_elements(mfa.events_search('dunder', '{"event_type": ["totp.authenticate", "sms_otp.authenticate"]}') -> 'events') e;
SELECT jsonb_array_length(mfa.events_search('dunder', '{"event_type": "member.created"}') -> 'events') AS created,
       jsonb_array_length(mfa.events_search('dunder', jsonb_build_object('before', now() - interval '1 hour')) -> 'events') AS before_the_hour,
       jsonb_array_length(mfa.events_search('dunder', jsonb_build_object('after', now() - interval '1 hour')) -> 'events')
         = :dunder_events AS all_after_the_hour;
-- An event object: no secret, the phone masked as every event keeps it.
SELECT jsonb_pretty(e - 'event_id' - 'occurred_at' - 'request_id' #- '{details,message_id}') AS event
  FROM jsonb_array_elements(mfa.events_search('dunder', '{"member_id": "jim", "event_type": "sms_otp.sent"}') -> 'events') e;
-- A walk through the events, 4 a page: every event once, newest first.
SELECT w.*, w.events = :dunder_events AS all_of_them
  FROM pg_temp.event_walk() w;
SELECT mfa.events_search('dunder', '{"member": "pam"}');
SELECT mfa.events_search('dunder', '{"event_type": []}');
SELECT mfa.events_search('dunder', '{"event_type": ["totp.authenticate", 7]}');
SELECT mfa.events_search('dunder', '{"after": "2026-02-30"}');
SELECT mfa.events_search('dunder', cursor => 'ZTE6MDA3');
-- Another organization's events are its own; one without events answers an empty page.
SELECT mfa.events_search('vance') -> 'events' AS vance_events;
RESET ROLE;

-- Removing a factor says so too: a verified phone replaced, an active app deleted (kevin's phone,
-- never verified, was no factor).
SELECT mfa.member_upsert('dunder', 'jim', '+14155550199', replace_mfa_phone_number => true) ->> 'mfa_phone_number_verified' AS jim_verified;
SELECT mfa.member_delete_totp('dunder', 'dwight') ->> 'totp_registration_id' AS dwight_app;
SELECT mfa.member_delete_mfa_phone_number('dunder', 'kevin') ->> 'mfa_phone_number' AS kevin_phone;
SELECT e ->> 'member_id' AS member, e ->> 'event_type' AS event_type,
       e -> 'details' ->> 'factor_removed' AS factor_removed
  FROM jsonb_array_elements(mfa.events_search('dunder', '{"event_type": ["member.updated", "totp.deleted", "member.phone_number_deleted"]}', NULL, 3) -> 'events') e;

-- The application's role may call neither (it must not read members or events).
CREATE ROLE dunder_app LOGIN IN ROLE mfa_app;
SET ROLE dunder_app;
SELECT mfa.members_search('dunder');
SELECT mfa.events_search('dunder');
RESET ROLE;
DROP ROLE dunder_admin, dunder_app;
