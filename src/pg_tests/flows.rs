//! TOTP, recovery codes, SMS codes, the outbox and the session gate, inside one backend.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_tests::{assert_error, error_of, json, run};
    use pgrx::prelude::*;
    use serde_json::Value;

    fn setup(policy: &str) {
        run(&format!(
            "SELECT mfa.organization_upsert('org-1', '{policy}'); SELECT mfa.member_upsert('org-1', 'ann')"
        ));
    }

    fn code_for(secret_b32: &str, offset_steps: i64) -> String {
        let secret = crate::core::totp::secret_from_base32(secret_b32).unwrap();
        let step =
            crate::core::totp::step_at(crate::core::ids::unix_seconds()) as i64 + offset_steps;
        crate::core::totp::hotp(totp_rs::Algorithm::SHA1, &secret, step as u64, 6)
    }

    fn totp_auth(code: &str) -> Value {
        json(&format!(
            "SELECT mfa.totp_authenticate('org-1', 'ann', '{code}')"
        ))
    }

    /// RFC 6238's SHA1 vector (secret "12345678901234567890", T = 59 s → 94287082, six digits
    /// 287082), within the skew and outside it.
    #[pg_test]
    fn totp_verify_checks_a_held_secret() {
        let verify = |code: &str, at: &str| {
            json(&format!(
                "SELECT to_jsonb(mfa.totp_verify('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', '{code}', '{at}'))"
            ))
        };
        assert_eq!(verify("287082", "1970-01-01 00:00:59+00"), true);
        assert_eq!(verify("287082", "1970-01-01 00:01:29+00"), true);
        assert_eq!(verify("287082", "1970-01-01 00:01:30+00"), false);
        assert_eq!(verify("287083", "1970-01-01 00:00:59+00"), false);
        assert_eq!(verify("287082", "infinity"), false);
        assert!(error_of("SELECT mfa.totp_verify('not base32!', '287082')")
            .starts_with("22023 invalid_totp_secret"));
    }

    #[pg_test]
    fn totp_create_authenticate_replay() {
        setup("OPTIONAL");
        let created = json("SELECT mfa.totp_create('org-1', 'ann')");
        let secret = created["secret"].as_str().unwrap().to_string();
        assert_eq!(secret.len(), 32);
        assert!(created["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/MFA:ann?secret="));
        assert!(created["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR"));
        assert_eq!(created["recovery_codes"].as_array().unwrap().len(), 10);
        // Pending until the first code.
        assert_eq!(created["member"]["totp_registration_id"], Value::Null);
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann')",
            "55000",
            "pending_totp_exists",
        );
        let ok = totp_auth(&code_for(&secret, 0));
        assert_eq!(ok["status_code"], 200, "{ok}");
        assert_eq!(
            ok["member"]["totp_registration_id"],
            created["totp_registration_id"]
        );
        assert_eq!(ok["member"]["default_mfa_method"], "totp");
        let replay = totp_auth(&code_for(&secret, 0));
        assert_eq!(replay["error_type"], "totp_code_already_authenticated");
        assert_eq!(replay["status_code"], 401);
        let older = totp_auth(&code_for(&secret, -1));
        assert_eq!(older["error_type"], "totp_code_already_authenticated");
        assert_eq!(totp_auth(&code_for(&secret, 1))["status_code"], 200);
        assert_eq!(totp_auth("000000x")["error_type"], "invalid_totp_code");
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann')",
            "55000",
            "active_totp_exists",
        );
    }

    #[pg_test]
    fn totp_lockout_and_unlock() {
        setup("OPTIONAL");
        let secret = json("SELECT mfa.totp_create('org-1', 'ann')")["secret"]
            .as_str()
            .unwrap()
            .to_string();
        run("SET mfa.lock_threshold = 3");
        for _ in 0..2 {
            assert_eq!(totp_auth("12345")["error_type"], "invalid_totp_code");
        }
        assert_eq!(
            json("SELECT mfa.member_get('org-1', 'ann')")["is_locked"],
            false
        );
        assert_eq!(totp_auth("12345")["error_type"], "invalid_totp_code");
        assert_eq!(
            json("SELECT mfa.member_get('org-1', 'ann')")["is_locked"],
            true
        );
        // Locked: even the right code is refused.
        let locked = totp_auth(&code_for(&secret, 0));
        assert_eq!(locked["error_type"], "user_lock_limit_reached");
        assert_eq!(locked["status_code"], 429);
        run("SELECT mfa.member_unlock('org-1', 'ann')");
        assert_eq!(totp_auth(&code_for(&secret, 0))["status_code"], 200);
        // Failures are audited by the ledger's worker in transactions of its own (counted in
        // tests/integration/tests/attempt_ledger.rs), never with the code.
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.events WHERE details::text LIKE '%12345%'"),
            0
        );
    }

    #[pg_test]
    fn pending_registration_expires() {
        setup("OPTIONAL");
        let secret = json("SELECT mfa.totp_create('org-1', 'ann', 5)")["secret"]
            .as_str()
            .unwrap()
            .to_string();
        run("UPDATE mfa.totp_registrations SET expires_at = now() - interval '1 second'");
        assert_eq!(
            totp_auth(&code_for(&secret, 0))["error_type"],
            "expired_totp"
        );
        // An expired pending registration does not block a new one.
        assert_eq!(
            json("SELECT mfa.totp_create('org-1', 'ann')")["status_code"],
            200
        );
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann', 4)",
            "22023",
            "invalid_expiration_minutes",
        );
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann', 1441)",
            "22023",
            "invalid_expiration_minutes",
        );
        assert_error(
            "SELECT mfa.totp_authenticate('org-1', 'bob', '123456')",
            "P0002",
            "member_not_found",
        );
    }

    #[pg_test]
    fn secrets_are_encrypted_at_rest() {
        setup("OPTIONAL");
        let created = json("SELECT mfa.totp_create('org-1', 'ann')");
        let secret_b32 = created["secret"].as_str().unwrap();
        let raw = crate::core::totp::secret_from_base32(secret_b32).unwrap();
        let stored =
            json("SELECT to_jsonb(encode(secret_ciphertext, 'hex')) FROM mfa.totp_registrations");
        let stored = stored.as_str().unwrap();
        assert!(!stored.contains(&data_encoding::HEXLOWER.encode(&raw)));
        // Under another key the stored secret does not decrypt.
        run("DELETE FROM mfa.database_keys");
        run("INSERT INTO mfa.database_keys (key_id, key) VALUES ('another', decode(repeat('01', 32), 'hex'))");
        assert_error(
            &format!(
                "SELECT mfa.totp_authenticate('org-1', 'ann', '{}')",
                code_for(secret_b32, 0)
            ),
            "55000",
            "encryption_key_mismatch",
        );
    }

    #[pg_test]
    fn migrate_and_recovery_codes() {
        setup("OPTIONAL");
        let m = json("SELECT mfa.totp_migrate('org-1', 'ann', 'JBSW Y3DP EHPK 3PXP', ARRAY['aaaa-bbbb-cccc', 'DDDD-EEEE-FFFF'])");
        assert!(m["member"]["totp_registration_id"].is_string());
        assert_eq!(m["recovery_codes_remaining"], 2);
        assert_eq!(
            totp_auth(&code_for("JBSWY3DPEHPK3PXP", 0))["status_code"],
            200
        );
        let r = json("SELECT mfa.recovery_codes_recover('org-1', 'ann', 'dddd-eeee-ffff')");
        assert_eq!(r["recovery_codes_remaining"], 1, "{r}");
        let again = json("SELECT mfa.recovery_codes_recover('org-1', 'ann', 'dddd-eeee-ffff')");
        assert_eq!(again["error_type"], "invalid_recovery_code");
        assert_eq!(
            json("SELECT mfa.recovery_codes_get('org-1', 'ann')")["recovery_codes_remaining"],
            1
        );
        // Minting codes needs a factor proven in a login or a step-up (not the member's id alone).
        assert_error(
            "SELECT mfa.recovery_codes_rotate('org-1', 'ann')",
            "28000",
            "insufficient_factors",
        );
        let bare = json("SELECT mfa.primary_authenticate('org-1', 'ann')")
            ["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_error(
            &format!("SELECT mfa.recovery_codes_rotate('org-1', 'ann', '{bare}')"),
            "28000",
            "insufficient_factors",
        );
        let step_up = json("SELECT mfa.step_up_start('org-1', 'ann')")
            ["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        let proven = json(&format!(
            "SELECT mfa.totp_authenticate('org-1', 'ann', '{}', '{step_up}')",
            code_for("JBSWY3DPEHPK3PXP", 1)
        ));
        assert_eq!(proven["status_code"], 200, "{proven}");
        let rotated = json(&format!(
            "SELECT mfa.recovery_codes_rotate('org-1', 'ann', '{step_up}')"
        ));
        let codes = rotated["recovery_codes"].as_array().unwrap().clone();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            json("SELECT mfa.recovery_codes_recover('org-1', 'ann', 'aaaa-bbbb-cccc')")
                ["error_type"],
            "invalid_recovery_code"
        );
        let used = json(&format!(
            "SELECT mfa.recovery_codes_recover('org-1', 'ann', '{}')",
            codes[3].as_str().unwrap()
        ));
        assert_eq!(used["recovery_codes_remaining"], 9);
        // Stored hashed only.
        let code = codes[0].as_str().unwrap();
        assert_eq!(json(&format!("SELECT to_jsonb(count(*)) FROM mfa.recovery_codes WHERE code_hash::text LIKE '%{code}%'")), 0);
        assert_error(
            "SELECT mfa.totp_migrate('org-1', 'ann', 'JBSWY3DPEHPK3PXP')",
            "55000",
            "active_totp_exists",
        );
        assert_error(
            "SELECT mfa.totp_migrate('org-1', 'ann', 'short')",
            "22023",
            "invalid_totp_secret",
        );
        run("SELECT mfa.member_delete_totp('org-1', 'ann')");
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM mfa.recovery_codes"), 0);
        assert_error(
            "SELECT mfa.recovery_codes_rotate('org-1', 'ann')",
            "P0002",
            "no_active_recovery_code_backed_factor",
        );
        assert_error(
            "SELECT mfa.member_delete_totp('org-1', 'ann')",
            "P0002",
            "totp_not_found",
        );
    }

    /// The code of the newest message, as a worker gets it (the table holds it encrypted only).
    fn last_sms_code() -> String {
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.sms_outbox WHERE body ~ '[0-9]{6}'"),
            0,
            "no code in clear"
        );
        let body = json(
            "SELECT to_jsonb(body) FROM mfa.sms_outbox_claim(1000, '0 seconds', 'org-1') ORDER BY id DESC LIMIT 1",
        );
        body.as_str()
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("a six-digit code in the text")
            .to_string()
    }

    #[pg_test]
    fn sms_send_authenticate_and_supersede() {
        setup("OPTIONAL");
        run("SET mfa.sms_min_interval_seconds = 0");
        let sent = json("SELECT mfa.otp_sms_send('org-1', 'ann', '+1 415 555 2671', 'fr')");
        // Sent before any second factor: the number is masked, as in member_options.
        assert_eq!(sent["member"]["mfa_phone_number"], "+*******2671");
        assert_eq!(sent["member"]["mfa_phone_number_verified"], false);
        assert!(
            !sent.to_string().contains(&last_sms_code()),
            "the code is never returned"
        );
        let first = last_sms_code();
        assert!(json("SELECT to_jsonb(body) FROM mfa.sms_outbox")
            .as_str()
            .unwrap()
            .starts_with("Votre code"));
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        let second = last_sms_code();
        if first != second {
            let old = json(&format!(
                "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{first}')"
            ));
            assert_eq!(
                old["error_type"], "unable_to_auth_otp_code",
                "a superseded code is dead"
            );
        }
        let ok = json(&format!(
            "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{second}')"
        ));
        assert_eq!(ok["status_code"], 200, "{ok}");
        assert_eq!(ok["member"]["mfa_phone_number_verified"], true);
        assert_eq!(ok["member"]["default_mfa_method"], "sms_otp");
        let reused = json(&format!(
            "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{second}')"
        ));
        assert_eq!(reused["error_type"], "unable_to_auth_otp_code");
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'ann', '+14165550123')",
            "55000",
            "duplicate_member_phone_number",
        );
    }

    #[pg_test]
    fn sms_countries_and_limits() {
        setup("OPTIONAL");
        run("SELECT mfa.member_upsert('org-1', 'bob'); SELECT mfa.member_upsert('org-1', 'cy')");
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'ann', '+12423570123')",
            "22023",
            "invalid_phone_number_country_code",
        );
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'ann', '+447400123456')",
            "22023",
            "invalid_phone_number_country_code",
        );
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM mfa.sms_outbox"), 0);
        assert_eq!(
            json("SELECT to_jsonb(mfa.country_code_allowlist_get())"),
            serde_json::json!(["CA", "US"])
        );
        assert_eq!(
            json("SELECT to_jsonb(mfa.country_code_allowlist_set(ARRAY['gb','US','us']))"),
            serde_json::json!(["GB", "US"])
        );
        assert_eq!(
            json("SELECT mfa.otp_sms_send('org-1', 'ann', '+447400123456')")["status_code"],
            200
        );
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'bob', '+447797712345')",
            "22023",
            "invalid_phone_number_country_code",
        );
        assert_error(
            "SELECT mfa.country_code_allowlist_set(ARRAY['US','RU','XX'])",
            "22023",
            "country_code_allowlist_invalid_country_codes",
        );
        assert_error(
            "SELECT mfa.country_code_allowlist_set('{}')",
            "22023",
            "country_code_allowlist_empty",
        );
        // Rate limits: the minimum interval, then the hourly count.
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'ann')",
            "53400",
            "too_many_requests",
        );
        run("SET mfa.sms_min_interval_seconds = 0; SET mfa.sms_sends_per_number_per_hour = 2");
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'ann')",
            "53400",
            "too_many_requests",
        );
        run("SET mfa.sms_sends_per_prefix_per_hour = 3");
        run("SELECT mfa.otp_sms_send('org-1', 'bob', '+447400123457')");
        assert_error(
            "SELECT mfa.otp_sms_send('org-1', 'cy', '+447400123458')",
            "53400",
            "too_many_requests",
        );
    }

    #[pg_test]
    fn sms_expiry_and_lock_shared_with_totp() {
        setup("OPTIONAL");
        run("SELECT mfa.otp_sms_send('org-1', 'ann', '+14155552671')");
        let code = last_sms_code();
        run("UPDATE mfa.sms_codes SET expires_at = now() - interval '1 second'");
        assert_eq!(
            json(&format!(
                "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{code}')"
            ))["error_type"],
            "otp_code_expired"
        );
        run("SET mfa.lock_threshold = 2");
        assert_eq!(
            json("SELECT mfa.otp_sms_authenticate('org-1', 'ann', '000000')")["status_code"],
            401
        );
        assert_eq!(
            json("SELECT mfa.member_get('org-1', 'ann')")["is_locked"],
            true
        );
    }

    #[pg_test]
    fn outbox_claim_complete_fail_dead() {
        setup("OPTIONAL");
        run("SELECT mfa.otp_sms_send('org-1', 'ann', '+14155552671')");
        let claimed = json("SELECT to_jsonb(c) FROM mfa.sms_outbox_claim(10, '30 seconds') c");
        assert_eq!(claimed["phone_number"], "+14155552671");
        assert_eq!(claimed["attempts"], 1);
        let id = claimed["id"].as_i64().unwrap();
        // Hidden from the next worker while claimed.
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.sms_outbox_claim()"),
            0
        );
        let first_receipt = claimed["receipt"].as_str().unwrap().to_string();
        // Visible again after the timeout: handed out with a new receipt, and the old one is dead.
        let reclaim = || {
            run("UPDATE mfa.sms_outbox SET visible_at = now() - interval '1 second' WHERE status = 'pending'");
            json("SELECT to_jsonb(c.receipt) FROM mfa.sms_outbox_claim() c")
                .as_str()
                .unwrap()
                .to_string()
        };
        let receipt = reclaim();
        assert_ne!(receipt, first_receipt);
        assert_error(
            &format!("SELECT mfa.sms_outbox_complete({id}, '{first_receipt}', 'SM0')"),
            "55000",
            "sms_message_not_held",
        );
        let failed = json(&format!(
            "SELECT mfa.sms_outbox_fail({id}, '{receipt}', 'provider timeout')"
        ));
        assert_eq!(failed["status"], "pending");
        // A failure ends the claim: its receipt finishes nothing more.
        assert_error(
            &format!("SELECT mfa.sms_outbox_complete({id}, '{receipt}', 'SM0')"),
            "55000",
            "sms_message_not_held",
        );
        let receipt = reclaim();
        let done = json(&format!(
            "SELECT mfa.sms_outbox_complete({id}, '{receipt}', 'SM123')"
        ));
        assert_eq!(done["status"], "sent");
        let body = json("SELECT to_jsonb(body) FROM mfa.sms_outbox");
        assert!(body.as_str().unwrap().contains("******"), "{body}");
        // A repeated acknowledgement is harmless; a message not held is an error.
        assert_eq!(
            json(&format!(
                "SELECT mfa.sms_outbox_complete({id}, '{receipt}', 'SM999')"
            ))["status"],
            "sent"
        );
        assert_eq!(
            json("SELECT to_jsonb(provider_message_id) FROM mfa.sms_outbox"),
            "SM123"
        );
        assert_error(
            &format!("SELECT mfa.sms_outbox_complete(987654321, '{receipt}')"),
            "55000",
            "sms_message_not_held",
        );
        assert_error(
            &format!("SELECT mfa.sms_outbox_fail({id}, '{receipt}', 'late')"),
            "55000",
            "sms_message_not_held",
        );
        // Fail without retry: dead, scrubbed, kept.
        run("SET mfa.sms_min_interval_seconds = 0");
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        let second = json("SELECT to_jsonb(c) FROM mfa.sms_outbox_claim() c");
        assert_eq!(
            json(&format!(
                "SELECT mfa.sms_outbox_fail({}, '{}', 'invalid number', false)",
                second["id"],
                second["receipt"].as_str().unwrap()
            ))["status"],
            "dead"
        );
        // Expired messages are never handed out.
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        run("UPDATE mfa.sms_outbox SET expires_at = now() WHERE status = 'pending'");
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.sms_outbox_claim()"),
            0
        );
        assert_eq!(
            json("SELECT jsonb_agg(status ORDER BY message_id) FROM mfa.sms_outbox"),
            serde_json::json!(["sent", "dead", "expired"])
        );
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.sms_outbox WHERE body ~ '[0-9]{6}' OR code_ciphertext IS NOT NULL"),
            0
        );
    }

    #[pg_test]
    fn a_tenants_claim_reads_only_its_own_organizations_messages() {
        setup("OPTIONAL");
        // A backlog of 500 other organizations (their workers are down), then one message of org-1.
        run("INSERT INTO mfa.organizations (organization_id) SELECT 'busy-' || i FROM generate_series(1, 500) i");
        run("INSERT INTO mfa.members (organization_id, member_id) SELECT 'busy-' || i, 'bob' FROM generate_series(1, 500) i");
        run(
            "INSERT INTO mfa.sms_outbox (organization_id, member_id, phone_number, country_code,
                                         rate_limit_prefix, locale, body, expires_at)
             SELECT 'busy-' || i % 500 + 1, 'bob', '+12125550100', 'US', '+1212555', 'en', 'x',
                    now() + interval '10 minutes'
               FROM generate_series(1, 5000) i",
        );
        run("SELECT mfa.otp_sms_send('org-1', 'ann', '+14155552671')");
        run("ANALYZE mfa.sms_outbox");
        // The plan a long-lived worker connection ends up with: generic, for any organization.
        run("SET LOCAL plan_cache_mode = force_generic_plan");
        let rows_read = "SELECT to_jsonb(sum(pg_stat_get_xact_tuples_returned(c.oid)))
                           FROM pg_class c
                          WHERE c.oid = 'mfa.sms_outbox'::regclass
                             OR c.oid IN (SELECT indexrelid FROM pg_index
                                           WHERE indrelid = 'mfa.sms_outbox'::regclass)";
        let before = json(rows_read).as_i64().unwrap();
        let claimed = json(
            "SELECT jsonb_agg(c.phone_number) FROM mfa.sms_outbox_claim(10, '30 seconds', 'org-1') c",
        );
        let read = json(rows_read).as_i64().unwrap() - before;
        assert_eq!(claimed, serde_json::json!(["+14155552671"]));
        assert!(
            read < 100,
            "read {read} outbox rows and index entries for one message"
        );
    }

    fn sessions_table() {
        run("CREATE TABLE app_sessions (id serial PRIMARY KEY, org text NOT NULL, member text NOT NULL,
                                        ist text, factors jsonb);
             CREATE TRIGGER require_mfa BEFORE INSERT ON app_sessions FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'ist', 'factors')");
    }

    fn login(member: &str) -> Value {
        json(&format!(
            "SELECT mfa.primary_authenticate('org-1', '{member}', 'password')"
        ))
    }

    #[pg_test]
    fn session_gate_required_for_all() {
        setup("REQUIRED_FOR_ALL");
        sessions_table();
        let started = login("ann");
        assert_eq!(started["member_authenticated"], false);
        assert!(started["mfa_required"].is_object());
        let token = started["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            token.len(),
            75,
            "256 random bits, its organization's tag and a MAC"
        );
        let insert = format!(
            "INSERT INTO app_sessions (org, member, ist) VALUES ('org-1', 'ann', '{token}')"
        );
        assert_error(&insert, "28000", "insufficient_factors");
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM app_sessions"), 0);
        // Enforced enrollment in the same login.
        let created = json(&format!(
            "SELECT mfa.totp_create('org-1', 'ann', intermediate_session_token => '{token}')"
        ));
        let secret = created["secret"].as_str().unwrap().to_string();
        let ok = json(&format!(
            "SELECT mfa.totp_authenticate('org-1', 'ann', '{}', '{token}')",
            code_for(&secret, 0)
        ));
        assert_eq!(ok["authentication_factors"][1]["type"], "totp", "{ok}");
        assert_eq!(ok["member"]["mfa_enrolled"], true);
        run(&insert);
        let factors = json("SELECT factors FROM app_sessions");
        assert_eq!(factors[0]["type"], "password");
        assert_eq!(factors[1]["delivery_method"], "authenticator_app");
        // One token, one session.
        assert_error(&insert, "28000", "insufficient_factors");
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM app_sessions"), 1);
        // A member with an active factor cannot add another without proving one first.
        let t2 = login("ann")["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_error(
            &format!("SELECT mfa.otp_sms_send('org-1', 'ann', '+14155552671', intermediate_session_token => '{t2}')"),
            "28000",
            "insufficient_factors",
        );
    }

    /// A login writes no audit row as it starts: its one event comes when it ends. One given up
    /// is recorded when its token dies, under the request id of its start, and its row holds
    /// what happened and nothing twice (the actor as text, not a 64-byte name; no null-valued
    /// keys).
    #[pg_test]
    fn a_login_is_recorded_once_when_it_ends() {
        setup("OPTIONAL");
        let events = || json("SELECT to_jsonb(count(*)) FROM mfa.events WHERE member_id = 'ann'");
        let before = events().as_i64().unwrap();
        let started = login("ann");
        assert_eq!(events(), before);
        run("UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'");
        login("ann");
        let row = json(
            "SELECT jsonb_build_array(pg_column_size(e.*), details, actor, request_id) FROM mfa.events e
              WHERE event_type = 'login.abandoned'",
        );
        assert_eq!(row[1]["factors"], serde_json::json!(["password"]));
        assert_eq!(
            row[1]["request_ids"],
            serde_json::json!([started["request_id"]])
        );
        assert_eq!(row[3], started["request_id"]);
        assert!(row[0].as_i64().unwrap() <= 280, "{row}");
        assert_eq!(events(), before + 1);
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.events WHERE jsonb_path_exists(details, '$.* ? (@ == null)')"),
            0
        );
    }

    #[pg_test]
    fn session_gate_tokens() {
        setup("OPTIONAL");
        run("SELECT mfa.organization_upsert('org-2'); SELECT mfa.member_upsert('org-2', 'ann')");
        let started = login("ann");
        assert_eq!(started["member_authenticated"], true);
        assert_eq!(started["mfa_required"], Value::Null);
        let token = started["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_error(
            &format!("SELECT mfa.check_session_policy('org-2', 'ann', '{token}')"),
            "28000",
            "insufficient_factors: invalid_intermediate_session_token_for_organization",
        );
        assert_error(
            &format!(
                "SELECT mfa.totp_create('org-2', 'ann', intermediate_session_token => '{token}')"
            ),
            "28000",
            "invalid_intermediate_session_token_for_organization",
        );
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann', intermediate_session_token => 'nope')",
            "P0002",
            "intermediate_session_not_found",
        );
        run("UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'");
        assert_error(
            &format!("SELECT mfa.check_session_policy('org-1', 'ann', '{token}')"),
            "28000",
            "insufficient_factors: intermediate_session_not_found",
        );
        let fresh = login("ann")["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        // The login started after the expired token removed it, and only it.
        assert_eq!(
            json("SELECT jsonb_build_array(count(*), count(*) FILTER (WHERE expires_at <= clock_timestamp())) FROM mfa.intermediate_sessions WHERE organization_id = 'org-1' AND member_id = 'ann'"),
            serde_json::json!([1, 0])
        );
        let passed = json(&format!(
            "SELECT mfa.check_session_policy('org-1', 'ann', '{fresh}')"
        ));
        assert_eq!(passed["authentication_factors"][0]["type"], "password");
        assert_eq!(
            passed["authentication_factors"][0]["delivery_method"],
            "knowledge"
        );
        // Stytch's delivery methods name the primary factor too.
        for (name, kind, delivery) in [
            ("sso_saml", "sso", "sso_saml"),
            ("oauth_google", "oauth", "oauth_google"),
            ("email", "magic_link", "email"),
            ("impersonated", "impersonation", "impersonation"),
        ] {
            let token = json(&format!(
                "SELECT mfa.primary_authenticate('org-1', 'ann', '{name}') -> 'intermediate_session_token'"
            ));
            let token = token.as_str().unwrap();
            let factors = json(&format!(
                "SELECT factors FROM mfa.intermediate_sessions
                  WHERE token_hash = sha256(convert_to('{token}', 'UTF8'))"
            ));
            assert_eq!(factors[0]["type"], kind, "{name}");
            assert_eq!(factors[0]["delivery_method"], delivery, "{name}");
        }
        assert_error(
            "SELECT mfa.primary_authenticate('org-1', 'ann', 'telepathy')",
            "22023",
            "invalid_primary_authentication_method",
        );
        // Tokens are stored hashed.
        assert_eq!(json(&format!("SELECT to_jsonb(count(*)) FROM mfa.intermediate_sessions WHERE token_hash::text LIKE '%{fresh}%'")), 0);
    }

    #[pg_test]
    fn restricted_methods_and_breakglass() {
        run("SELECT mfa.organization_upsert('org-1', 'REQUIRED_FOR_ALL', 'RESTRICTED', ARRAY['sms_otp'])");
        run("SELECT mfa.member_upsert('org-1', 'ann'); SELECT mfa.member_upsert('org-1', 'root', is_breakglass => true)");
        assert_error(
            "SELECT mfa.totp_create('org-1', 'ann')",
            "42501",
            "operation_restricted_by_organization_mfa_methods",
        );
        // Breakglass members pass with the primary factor and ignore the restriction.
        assert_eq!(
            json("SELECT mfa.totp_create('org-1', 'root')")["status_code"],
            200
        );
        let t = login("root")["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            json(&format!(
                "SELECT mfa.check_session_policy('org-1', 'root', '{t}')"
            ))["status_code"],
            200
        );
    }

    #[pg_test]
    fn sms_is_sent_at_login_when_it_is_the_method() {
        setup("REQUIRED_FOR_ALL");
        run("SELECT mfa.otp_sms_send('org-1', 'ann', '+14155552671')");
        let code = last_sms_code();
        run(&format!(
            "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{code}')"
        ));
        run("UPDATE mfa.sms_outbox SET created_at = created_at - interval '1 hour'");
        let started = login("ann");
        assert_eq!(
            started["mfa_required"]["secondary_auth_initiated"],
            "sms_otp"
        );
        assert_eq!(
            started["mfa_required"]["member_options"]["mfa_phone_number"],
            "+*******2671"
        );
        let token = started["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        let ok = json(&format!(
            "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{}', '{token}')",
            last_sms_code()
        ));
        assert_eq!(
            ok["authentication_factors"][1]["phone_number_factor"]["phone_number"],
            "+14155552671"
        );
        assert_eq!(
            json(&format!(
                "SELECT mfa.check_session_policy('org-1', 'ann', '{token}')"
            ))["status_code"],
            200
        );
    }

    #[pg_test]
    fn enrollment_and_default_method_follow_stytch() {
        setup("OPTIONAL");
        run("SET mfa.totp_issuer = 'Acme: Corp'");
        let created = json("SELECT mfa.totp_create('org-1', 'ann')");
        assert!(created["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Acme_%20Corp:ann?"));
        let secret = created["secret"].as_str().unwrap().to_string();
        assert_error(
            &format!(
                "SELECT mfa.totp_authenticate('org-1', 'ann', '{}', set_mfa_enrollment => 'maybe')",
                code_for(&secret, 0)
            ),
            "22023",
            "invalid_set_mfa_enrollment",
        );
        let enrolled = json(&format!(
            "SELECT mfa.totp_authenticate('org-1', 'ann', '{}', set_mfa_enrollment => 'enroll')",
            code_for(&secret, -1)
        ));
        assert_eq!(enrolled["member"]["mfa_enrolled"], true, "{enrolled}");
        assert_eq!(enrolled["member"]["default_mfa_method"], "totp");
        // SMS proven later does not take the default unless asked to.
        run("SET mfa.sms_min_interval_seconds = 0");
        run("SELECT mfa.member_upsert('org-1', 'ann', '+14155552671')");
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        let sms = json(&format!("SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{}', set_mfa_enrollment => 'unenroll')", last_sms_code()));
        assert_eq!(sms["member"]["default_mfa_method"], "totp");
        assert_eq!(sms["member"]["mfa_enrolled"], false);
        run("SELECT mfa.otp_sms_send('org-1', 'ann')");
        let sms = json(&format!(
            "SELECT mfa.otp_sms_authenticate('org-1', 'ann', '{}', set_default_mfa => true)",
            last_sms_code()
        ));
        assert_eq!(sms["member"]["default_mfa_method"], "sms_otp");
        // Under REQUIRED_FOR_ALL a success always enrolls; unenroll is ignored.
        run("SELECT mfa.organization_upsert('org-1', 'REQUIRED_FOR_ALL')");
        let forced = json(&format!(
            "SELECT mfa.totp_authenticate('org-1', 'ann', '{}', set_mfa_enrollment => 'unenroll')",
            code_for(&secret, 1)
        ));
        assert_eq!(forced["member"]["mfa_enrolled"], true, "{forced}");
    }
}
