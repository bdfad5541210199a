//! Exhaustive tables: every role against every function and table, and every combination of
//! organization policy, enrollment, factor, method restriction and breakglass against the session
//! trigger.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_tests::{error_of, json, run};
    use pgrx::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn executable_by(role: &str) -> BTreeSet<String> {
        let names = json(&format!(
            "SELECT coalesce(jsonb_agg(p.proname ORDER BY p.proname), '[]') FROM pg_proc p
              WHERE p.pronamespace = 'mfa'::regnamespace AND has_function_privilege('{role}', p.oid, 'EXECUTE')"
        ));
        names
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[pg_test]
    fn privilege_matrix() {
        assert_eq!(
            executable_by("mfa_sms_worker"),
            set(&[
                "session_gate",
                "sms_outbox_claim",
                "sms_outbox_complete",
                "sms_outbox_fail"
            ])
        );
        assert_eq!(
            executable_by("mfa_app"),
            set(&[
                "check_session_policy",
                "enforce_session_policy",
                "last_mfa_at",
                "member_delete_mfa_phone_number",
                "member_delete_totp",
                "otp_sms_authenticate",
                "otp_sms_send",
                "primary_authenticate",
                "qr_code_text",
                "recovery_codes_get",
                "recovery_codes_recover",
                "recovery_codes_rotate",
                "remembered_device_create",
                "remembered_device_revoke",
                "remembered_devices_get",
                "session_aal",
                "session_amr",
                "session_gate",
                "session_phishing_resistant",
                "session_verified_factors",
                "sms_country_supported",
                "step_up_start",
                "totp_authenticate",
                "totp_create",
                "totp_verify",
                "webauthn_allowed_origins_get",
                "webauthn_authenticate",
                "webauthn_authenticate_start",
                "webauthn_register",
                "webauthn_register_start",
                "webauthn_registration_delete",
                "webauthn_registration_update",
                "webauthn_registrations_get",
            ])
        );
        assert_eq!(
            executable_by("mfa_admin"),
            set(&[
                "attempt_ledger_stats",
                "country_code_allowlist_get",
                "country_code_allowlist_set",
                "distribute",
                "encryption_key_rotate",
                "encryption_keys",
                "enforce_session_policy",
                "events_search",
                "last_mfa_at",
                "member_delete",
                "member_delete_mfa_phone_number",
                "member_delete_totp",
                "member_get",
                "member_reset_mfa",
                "member_unlock",
                "member_upsert",
                "members_import",
                "members_search",
                "metrics",
                "organization_delete",
                "organization_get",
                "organization_upsert",
                "qr_code_text",
                "recovery_codes_get",
                "recovery_codes_rotate",
                "remembered_device_revoke",
                "remembered_devices_get",
                "session_aal",
                "session_amr",
                "session_gate",
                "session_phishing_resistant",
                "session_table_guard",
                "session_table_guard_check",
                "session_table_unguard",
                "session_verified_factors",
                "sms_country_supported",
                "sms_worker_grant",
                "sms_worker_revoke",
                "totp_migrate",
                "totp_verify",
                "webauthn_allowed_origins_get",
                "webauthn_allowed_origins_set",
                "webauthn_registration_delete",
                "webauthn_registration_update",
                "webauthn_registrations_get",
            ])
        );
        // Monitoring agents (pg_monitor's members) read the metrics and nothing else.
        assert_eq!(
            executable_by("pg_monitor"),
            set(&["metrics", "session_gate"])
        );
        run("CREATE ROLE matrix_plain LOGIN");
        // Only the guard's trigger function, which PostgreSQL requires of whoever creates a
        // partition of a guarded table (its triggers are cloned); outside a trigger it refuses.
        assert_eq!(executable_by("matrix_plain"), set(&["session_gate"]));
        for role in ["mfa_admin", "mfa_app", "mfa_sms_worker", "matrix_plain"] {
            let readable = json(&format!(
                "SELECT coalesce(jsonb_agg(c.relname), '[]') FROM pg_class c
                  WHERE c.relnamespace = 'mfa'::regnamespace AND c.relkind IN ('r', 'S', 'v')
                    AND (has_table_privilege('{role}', c.oid, 'SELECT') OR has_table_privilege('{role}', c.oid, 'INSERT')
                         OR has_table_privilege('{role}', c.oid, 'UPDATE') OR has_table_privilege('{role}', c.oid, 'DELETE'))"
            ));
            assert_eq!(readable, serde_json::json!([]), "{role} can touch a table");
        }
        assert_eq!(
            json("SELECT to_jsonb(has_schema_privilege('matrix_plain', 'mfa', 'USAGE'))"),
            false
        );
        assert_eq!(
            json("SELECT to_jsonb(has_schema_privilege('mfa_app', 'mfa', 'CREATE'))"),
            false
        );
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Factor {
        None,
        Sms,
        Totp,
        Recovery,
    }

    /// The rules restated independently of `policy`: MFA is required when the member enrolled,
    /// or when the organization requires it and the member is not breakglass; a factor counts
    /// when every method is allowed, the member is breakglass, or it is SMS (the one allowed here).
    fn expected_allowed(
        required_for_all: bool,
        enrolled: bool,
        factor: Factor,
        restricted: bool,
        breakglass: bool,
    ) -> bool {
        let mfa_required = enrolled || (required_for_all && !breakglass);
        let factor_counts =
            factor != Factor::None && (!restricted || breakglass || factor == Factor::Sms);
        !mfa_required || factor_counts
    }

    fn secret_code(secret: &str) -> String {
        let secret = crate::core::totp::secret_from_base32(secret).unwrap();
        crate::core::totp::hotp(
            totp_rs::Algorithm::SHA1,
            &secret,
            crate::core::totp::step_at(crate::core::ids::unix_seconds()),
            6,
        )
    }

    /// Proves `factor` during the login of `token`; a method the organization forbids is refused
    /// (the error is expected and ignored: the factor is then simply not proven).
    fn prove(org: &str, member: &str, token: &str, factor: Factor, phone: &str) {
        match factor {
            Factor::None => {}
            Factor::Sms => {
                let sent = error_of(&format!(
                    "SELECT mfa.otp_sms_send('{org}', '{member}', '{phone}', intermediate_session_token => '{token}')"
                ));
                if sent == "no error" {
                    let code = json(&format!(
                        "SELECT to_jsonb(substring(body from '[0-9]{{6}}'))
                           FROM mfa.sms_outbox_claim(1000, '0 seconds', '{org}') ORDER BY id DESC LIMIT 1"
                    ));
                    let r = json(&format!(
                        "SELECT mfa.otp_sms_authenticate('{org}', '{member}', '{}', '{token}')",
                        code.as_str().unwrap()
                    ));
                    assert_eq!(r["status_code"], 200, "{r}");
                }
            }
            Factor::Totp => {
                run("CREATE TEMP TABLE IF NOT EXISTS created (v jsonb); TRUNCATE created");
                let created = error_of(&format!(
                    "INSERT INTO created SELECT mfa.totp_create('{org}', '{member}', intermediate_session_token => '{token}')"
                ));
                if created == "no error" {
                    let secret = json("SELECT v->'secret' FROM created");
                    let r = json(&format!(
                        "SELECT mfa.totp_authenticate('{org}', '{member}', '{}', '{token}')",
                        secret_code(secret.as_str().unwrap())
                    ));
                    assert_eq!(r["status_code"], 200, "{r}");
                }
            }
            Factor::Recovery => {
                // An administrator imports the member's authenticator with recovery codes.
                run(&format!("SELECT mfa.totp_migrate('{org}', '{member}', 'JBSWY3DPEHPK3PXP', ARRAY['abcd-efgh-ijkl'])"));
                let _ = error_of(&format!("SELECT mfa.recovery_codes_recover('{org}', '{member}', 'abcd-efgh-ijkl', '{token}')"));
            }
        }
    }

    #[pg_test]
    fn session_policy_matrix() {
        run("SET mfa.sms_min_interval_seconds = 0; SET mfa.sms_sends_per_prefix_per_hour = 100000");
        run("CREATE TABLE matrix_sessions (id serial PRIMARY KEY, org text, member text, token text, factors jsonb);
             CREATE TRIGGER gate BEFORE INSERT ON matrix_sessions FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'token', 'factors')");
        let mut case = 0;
        let mut outcomes = Vec::new();
        for required_for_all in [false, true] {
            for restricted in [false, true] {
                for enrolled in [false, true] {
                    for breakglass in [false, true] {
                        for factor in [Factor::None, Factor::Sms, Factor::Totp, Factor::Recovery] {
                            case += 1;
                            let org = format!("matrix-{case}");
                            run(&format!(
                                "SELECT mfa.organization_upsert('{org}', '{}', '{}', ARRAY['sms_otp'])",
                                if required_for_all { "REQUIRED_FOR_ALL" } else { "OPTIONAL" },
                                if restricted { "RESTRICTED" } else { "ALL_ALLOWED" },
                            ));
                            run(&format!(
                                "SELECT mfa.member_upsert('{org}', 'm', mfa_enrolled => {enrolled}, is_breakglass => {breakglass})"
                            ));
                            let login = json(&format!(
                                "SELECT mfa.primary_authenticate('{org}', 'm', 'sso')"
                            ));
                            let token = login["intermediate_session_token"]
                                .as_str()
                                .unwrap()
                                .to_string();
                            prove(
                                &org,
                                "m",
                                &token,
                                factor,
                                &format!("+1415555{:04}", 3000 + case),
                            );
                            let inserted = error_of(&format!(
                                "INSERT INTO matrix_sessions (org, member, token) VALUES ('{org}', 'm', '{token}')"
                            ));
                            let rows = json(&format!("SELECT to_jsonb(count(*)) FROM matrix_sessions WHERE org = '{org}'"));
                            let expected = expected_allowed(
                                required_for_all,
                                enrolled,
                                factor,
                                restricted,
                                breakglass,
                            );
                            let label = format!(
                                "required_for_all={required_for_all} restricted={restricted} enrolled={enrolled} breakglass={breakglass} factor={factor:?}"
                            );
                            if expected {
                                assert_eq!(inserted, "no error", "{label}");
                                assert_eq!(rows, 1, "{label}");
                                // The factors column holds what the login proved, primary first.
                                let factors = json(&format!(
                                    "SELECT factors FROM matrix_sessions WHERE org = '{org}'"
                                ));
                                assert_eq!(factors[0]["type"], "sso", "{label}");
                            } else {
                                assert!(
                                    inserted.starts_with("28000 insufficient_factors: "),
                                    "{label}: {inserted}"
                                );
                                assert_eq!(rows, 0, "{label}: a denied insert left a row");
                            }
                            // Expired and reused tokens never pass.
                            if expected {
                                let reused = error_of(&format!(
                                    "INSERT INTO matrix_sessions (org, member, token) VALUES ('{org}', 'm', '{token}')"
                                ));
                                assert!(reused.starts_with("28000 "), "{label}: reuse {reused}");
                            }
                            outcomes.push(expected);
                        }
                    }
                }
            }
        }
        assert_eq!(case, 64);
        // 5 of the 8 (policy, enrolled, breakglass) rows require MFA; each denies "no factor", and
        // under the restriction a non-breakglass member's TOTP and recovery code too: 5 + 9 + 2.
        assert_eq!(outcomes.iter().filter(|o| !**o).count(), 16);
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM matrix_sessions"),
            Value::from(outcomes.iter().filter(|o| **o).count())
        );
    }

    /// The application inserts its sessions as its own role, which cannot read the extension's
    /// tables: the gate must still decide (and consume the token) on its behalf.
    #[pg_test]
    fn the_gate_works_for_the_application_role() {
        run("SELECT mfa.organization_upsert('o1'); SELECT mfa.member_upsert('o1', 'm')");
        run(
            "CREATE TABLE app_sessions (org text, member text, token text, factors jsonb);
             CREATE TRIGGER gate BEFORE INSERT ON app_sessions FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'token', 'factors');
             GRANT INSERT, SELECT ON app_sessions TO mfa_app",
        );
        run("SET ROLE mfa_app");
        let t = json("SELECT mfa.primary_authenticate('o1', 'm')")["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        run(&format!(
            "INSERT INTO app_sessions VALUES ('o1', 'm', '{t}')"
        ));
        let reused = error_of(&format!(
            "INSERT INTO app_sessions VALUES ('o1', 'm', '{t}')"
        ));
        run("RESET ROLE");
        assert!(reused.starts_with("28000 insufficient_factors"), "{reused}");
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM app_sessions WHERE factors->0->>'type' = 'password'"),
            1
        );
    }

    #[pg_test]
    fn expired_and_foreign_tokens_never_pass() {
        run(
            "SELECT mfa.organization_upsert('o1'); SELECT mfa.member_upsert('o1', 'm');
             SELECT mfa.organization_upsert('o2'); SELECT mfa.member_upsert('o2', 'm')",
        );
        run("CREATE TABLE s (org text, member text, token text);
             CREATE TRIGGER gate BEFORE INSERT ON s FOR EACH ROW EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'token')");
        let t = json("SELECT mfa.primary_authenticate('o1', 'm')")["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string();
        let foreign = error_of(&format!("INSERT INTO s VALUES ('o2', 'm', '{t}')"));
        assert!(
            foreign.starts_with(
                "28000 insufficient_factors: invalid_intermediate_session_token_for_organization"
            ),
            "{foreign}"
        );
        let other_member = error_of(&format!("INSERT INTO s VALUES ('o1', 'x', '{t}')"));
        assert!(
            other_member.starts_with("P0002 member_not_found"),
            "{other_member}"
        );
        run("UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'");
        let expired = error_of(&format!("INSERT INTO s VALUES ('o1', 'm', '{t}')"));
        assert!(
            expired.starts_with("28000 insufficient_factors: intermediate_session_not_found"),
            "{expired}"
        );
        let missing = error_of("INSERT INTO s VALUES ('o1', 'm', NULL)");
        assert!(
            missing.starts_with("28000 insufficient_factors"),
            "{missing}"
        );
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM s"), 0);
        // A trigger declared with the wrong arguments is refused at its first row.
        run("CREATE TABLE s2 (org text); CREATE TRIGGER gate BEFORE INSERT ON s2 FOR EACH ROW EXECUTE FUNCTION mfa.enforce_session_policy('org')");
        assert!(error_of("INSERT INTO s2 VALUES ('o1')").starts_with("22023 invalid_argument"));
        run("CREATE TABLE s3 (org text, member text, token text); CREATE TRIGGER gate BEFORE INSERT ON s3 FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'no_such_column')");
        assert!(error_of("INSERT INTO s3 VALUES ('o1', 'm', 't')")
            .starts_with("22023 invalid_argument"));
    }
}
