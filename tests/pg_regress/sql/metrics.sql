-- mfa.metrics(): one row per Prometheus sample (name, labels, value), for mfa_admin and the
-- members of pg_monitor. The counters are the server's (shared memory: every database together,
-- since the server started), so this file looks at how they move, from a snapshot.
\pset null '∅'
CREATE TEMP TABLE metrics_before AS SELECT name, labels, value FROM mfa.metrics();
SELECT DISTINCT name FROM mfa.metrics() ORDER BY 1;
-- Labels are objects of strings; every value is a number; the counters never go below zero.
SELECT count(*) FILTER (WHERE jsonb_typeof(labels) <> 'object') AS labels_not_objects,
       count(*) FILTER (WHERE EXISTS (SELECT FROM jsonb_each(labels) l WHERE jsonb_typeof(l.value) <> 'string')) AS labels_not_strings,
       count(*) FILTER (WHERE value IS NULL OR value < 0) AS bad_values
  FROM mfa.metrics();
SELECT value AS preloaded FROM mfa.metrics() WHERE name = 'mfa_preloaded';
SELECT labels FROM mfa.metrics() WHERE name = 'mfa_second_factor_attempts_total' ORDER BY labels::text;

-- Known actions: a login, a wrong TOTP code, a right one, a step-up.
SELECT mfa.organization_upsert('metrics-co', 'REQUIRED_FOR_ALL') ->> 'organization_id' AS organization;
SELECT mfa.member_upsert('metrics-co', 'mia') ->> 'member_id' AS member;
SELECT mfa.totp_migrate('metrics-co', 'mia', 'JBSWY3DPEHPK3PXP') ->> 'status_code' AS migrated;
SELECT mfa.primary_authenticate('metrics-co', 'mia', 'password') ->> 'intermediate_session_token' AS token \gset
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('metrics-co', 'mia', lpad(((:'code'::int + 500000) % 1000000)::text, 6, '0'), :'token') ->> 'error_type' AS wrong_code;
SELECT mfa.totp_authenticate('metrics-co', 'mia', :'code', :'token') ->> 'status_code' AS right_code;
SELECT mfa.step_up_start('metrics-co', 'mia') ->> 'status_code' AS step_up;
-- The counters moved by exactly that.
SELECT m.name, m.labels, m.value - coalesce(b.value, 0) AS moved
  FROM mfa.metrics() m LEFT JOIN metrics_before b USING (name, labels)
 WHERE m.name LIKE '%\_total' AND m.value <> coalesce(b.value, 0)
 ORDER BY m.name, m.labels::text;

-- The outbox of one organization: a message given up (dead), one held by a worker's claim, one
-- waiting; and a member locked now (as the attempt ledger's writer records it).
SELECT mfa.member_upsert('metrics-co', m, p) ->> 'member_id' AS member
  FROM (VALUES ('moe', '+14165550171'), ('max', '+14165550172'), ('mel', '+14165550173')) AS v (m, p);
SELECT mfa.otp_sms_send('metrics-co', 'moe') ->> 'status_code' AS sent;
SELECT mfa.sms_outbox_fail(id, receipt, 'invalid number', false) ->> 'status' AS moe
  FROM mfa.sms_outbox_claim(1, '1 minute', 'metrics-co');
SELECT mfa.otp_sms_send('metrics-co', 'max') ->> 'status_code' AS sent;
SELECT count(*) AS claimed FROM mfa.sms_outbox_claim(1, '1 minute', 'metrics-co');
SELECT mfa.otp_sms_send('metrics-co', 'mel') ->> 'status_code' AS sent;
INSERT INTO mfa.member_lockouts (organization_id, member_id, lock_created_at, lock_expires_at, lock_count)
VALUES ('metrics-co', 'moe', now(), now() + interval '1 hour', 1);
SELECT name, labels, value FROM mfa.metrics(per_organization => true)
 WHERE labels ->> 'organization_id' = 'metrics-co' AND name <> 'mfa_sms_outbox_oldest_pending_age_seconds'
 ORDER BY name, labels::text;
SELECT value BETWEEN 0 AND 60 AS oldest_pending_age_in_seconds FROM mfa.metrics(true)
 WHERE name = 'mfa_sms_outbox_oldest_pending_age_seconds' AND labels ->> 'organization_id' = 'metrics-co';
-- Without per_organization, the same figures are totals without an organization label.
SELECT count(*) AS labelled_by_organization FROM mfa.metrics() WHERE labels ? 'organization_id';
SELECT name, labels ->> 'status' AS status, value >= 1 AS at_least_ours FROM mfa.metrics()
 WHERE name IN ('mfa_sms_outbox_messages', 'mfa_members_locked') ORDER BY 1, 2;

-- Who may read them: mfa_admin and pg_monitor's members; not the application, not the workers.
CREATE ROLE regress_metrics_app LOGIN IN ROLE mfa_app;
CREATE ROLE regress_metrics_monitor LOGIN IN ROLE pg_monitor;
SET ROLE regress_metrics_app;
SELECT count(*) FROM mfa.metrics();
RESET ROLE;
SET ROLE regress_metrics_monitor;
SELECT count(*) > 0 AS monitor_reads_metrics FROM mfa.metrics(true);
SELECT mfa.attempt_ledger_stats();
RESET ROLE;
DROP ROLE regress_metrics_app, regress_metrics_monitor;
