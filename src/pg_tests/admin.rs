//! Organizations, members, their value rules, cascades, the audit trail and the privilege split.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_tests::{assert_error, error_of, json, run};
    use pgrx::prelude::*;

    #[pg_test]
    fn organization_defaults_and_updates() {
        let o = json("SELECT mfa.organization_upsert('org-1')");
        assert_eq!(o["mfa_policy"], "OPTIONAL");
        assert_eq!(o["mfa_methods"], "ALL_ALLOWED");
        assert_eq!(o["allowed_mfa_methods"], serde_json::json!([]));
        let o = json(
            "SELECT mfa.organization_upsert('org-1', 'REQUIRED_FOR_ALL', 'RESTRICTED', ARRAY['totp','sms_otp','totp'])",
        );
        assert_eq!(o["mfa_policy"], "REQUIRED_FOR_ALL");
        assert_eq!(
            o["allowed_mfa_methods"],
            serde_json::json!(["sms_otp", "totp"])
        );
        // NULL keeps what is there.
        let o = json("SELECT mfa.organization_upsert('org-1', mfa_methods => 'ALL_ALLOWED')");
        assert_eq!(o["mfa_policy"], "REQUIRED_FOR_ALL");
        assert_eq!(o["mfa_methods"], "ALL_ALLOWED");
        assert_eq!(
            json("SELECT mfa.organization_get('org-1')")["mfa_methods"],
            "ALL_ALLOWED"
        );
    }

    #[pg_test]
    fn organization_value_rules() {
        run("SELECT mfa.organization_upsert('org-1')");
        assert_error(
            "SELECT mfa.organization_upsert('org-1', 'required')",
            "22023",
            "invalid_organization_mfa_policy",
        );
        assert_error(
            "SELECT mfa.organization_upsert('org-1', NULL, 'NONE')",
            "22023",
            "invalid_organization_mfa_methods",
        );
        assert_error(
            "SELECT mfa.organization_upsert('org-1', NULL, NULL, ARRAY['email'])",
            "22023",
            "invalid_organization_allowed_mfa_methods",
        );
        assert_error(
            "SELECT mfa.organization_upsert('org-1', NULL, NULL, ARRAY[NULL]::text[])",
            "22023",
            "invalid_organization_allowed_mfa_methods",
        );
        assert_error(
            "SELECT mfa.organization_upsert('org-1', NULL, 'RESTRICTED')",
            "22023",
            "allowed_mfa_methods_required_for_restricted",
        );
        assert_error(
            "SELECT mfa.organization_upsert('org-1', NULL, 'RESTRICTED', '{}')",
            "22023",
            "allowed_mfa_methods_required_for_restricted",
        );
        assert_error(
            "SELECT mfa.organization_upsert(NULL)",
            "22023",
            "invalid_organization_id",
        );
        assert_error(
            "SELECT mfa.organization_upsert('')",
            "22023",
            "invalid_organization_id",
        );
        assert_error(
            "SELECT mfa.organization_upsert(repeat('x', 129))",
            "22023",
            "invalid_organization_id",
        );
        assert_error(
            "SELECT mfa.organization_get('nope')",
            "P0002",
            "organization_not_found",
        );
        assert_error(
            "SELECT mfa.organization_delete('nope')",
            "P0002",
            "organization_not_found",
        );
        // A refused change leaves the organization as it was.
        assert_eq!(
            json("SELECT mfa.organization_get('org-1')")["mfa_methods"],
            "ALL_ALLOWED"
        );
    }

    #[pg_test]
    fn member_defaults_updates_and_phone() {
        run("SELECT mfa.organization_upsert('org-1')");
        let m = json("SELECT mfa.member_upsert('org-1', 'ann')");
        assert_eq!(m["mfa_enrolled"], false);
        assert_eq!(m["mfa_phone_number"], serde_json::Value::Null);
        assert_eq!(m["is_locked"], false);
        assert_eq!(m["totp_registration_id"], serde_json::Value::Null);
        let m = json(
            "SELECT mfa.member_upsert('org-1', 'ann', '+1 (415) 555-2671', true, 'sms_otp', true)",
        );
        assert_eq!(m["mfa_phone_number"], "+14155552671");
        assert_eq!(m["mfa_phone_number_verified"], false);
        assert_eq!(m["mfa_enrolled"], true);
        assert_eq!(m["default_mfa_method"], "sms_otp");
        assert_eq!(m["is_breakglass"], true);
        let m = json("SELECT mfa.member_upsert('org-1', 'ann', is_breakglass => false)");
        assert_eq!(m["is_breakglass"], false);
        assert_eq!(m["mfa_phone_number"], "+14155552671");
        let m = json("SELECT mfa.member_delete_mfa_phone_number('org-1', 'ann')");
        assert_eq!(m["mfa_phone_number"], serde_json::Value::Null);
        assert_eq!(m["default_mfa_method"], serde_json::Value::Null);
        assert_error(
            "SELECT mfa.member_delete_mfa_phone_number('org-1', 'ann')",
            "P0002",
            "member_phone_number_not_found",
        );
    }

    #[pg_test]
    fn member_value_rules() {
        run("SELECT mfa.organization_upsert('org-1'); SELECT mfa.member_upsert('org-1', 'ann')");
        assert_error(
            "SELECT mfa.member_upsert('nope', 'ann')",
            "P0002",
            "organization_not_found",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', NULL)",
            "22023",
            "invalid_member_id",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', 'ann', '555-2671')",
            "22023",
            "invalid_phone_number",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', 'ann', '+1 800 FLOWERS')",
            "22023",
            "invalid_phone_number",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', 'ann', default_mfa_method => 'email')",
            "22023",
            "invalid_mfa_default_method",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', 'ann', default_mfa_method => 'totp')",
            "22023",
            "default_mfa_member_missing_factor",
        );
        assert_error(
            "SELECT mfa.member_upsert('org-1', 'ann', default_mfa_method => 'sms_otp')",
            "22023",
            "default_mfa_member_missing_factor",
        );
        assert_error(
            "SELECT mfa.member_get('org-1', 'bob')",
            "P0002",
            "member_not_found",
        );
        assert_error(
            "SELECT mfa.member_delete('org-1', 'bob')",
            "P0002",
            "member_not_found",
        );
        assert_error(
            "SELECT mfa.member_unlock('org-1', 'bob')",
            "P0002",
            "member_not_found",
        );
    }

    #[pg_test]
    fn unlock_lifts_a_lock() {
        run("SELECT mfa.organization_upsert('org-1'); SELECT mfa.member_upsert('org-1', 'ann')");
        // A lock the ledger's worker wrote before a restart: the ledger starts from it.
        run("INSERT INTO mfa.member_lockouts (organization_id, member_id, lock_created_at, lock_expires_at, lock_count)
             VALUES ('org-1', 'ann', now(), now() + interval '1 hour', 1)");
        let m = json("SELECT mfa.member_get('org-1', 'ann')");
        assert_eq!(m["is_locked"], true);
        assert!(m["lock_expires_at"].is_string());
        let m = json("SELECT mfa.member_unlock('org-1', 'ann')");
        assert_eq!(m["is_locked"], false);
        // Lifted in the ledger at once (its worker resets the row once the member is committed).
        assert_eq!(
            json("SELECT mfa.member_get('org-1', 'ann')")["is_locked"],
            false
        );
    }

    #[pg_test]
    fn deletes_cascade_and_are_audited() {
        run("SELECT mfa.organization_upsert('org-1'); SELECT mfa.member_upsert('org-1', 'ann', '+14155552671');
             SELECT mfa.member_upsert('org-1', 'bob'); SELECT mfa.organization_upsert('org-2');
             SELECT mfa.member_upsert('org-2', 'cy')");
        run("SELECT mfa.member_delete('org-1', 'bob')");
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.members WHERE organization_id = 'org-1'"),
            1
        );
        run("SELECT mfa.organization_delete('org-1')");
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.members WHERE organization_id = 'org-1'"),
            0
        );
        assert_eq!(json("SELECT to_jsonb(count(*)) FROM mfa.members"), 1);
        let events = json(
            // Only this test's: the ledger's worker commits other tests' failures of an 'org-1'.
            "SELECT jsonb_agg(event_type ORDER BY event_id) FROM mfa.events WHERE organization_id = 'org-1' AND xmin = pg_current_xact_id()::xid",
        );
        assert_eq!(
            events,
            serde_json::json!([
                "organization.created",
                "member.created",
                "member.created",
                "member.deleted",
                "organization.deleted"
            ])
        );
        // The audit trail shows the phone masked, never in full.
        assert_eq!(
            json(
                "SELECT to_jsonb(count(*)) FROM mfa.events WHERE details::text LIKE '%4155552671%'"
            ),
            0
        );
        assert_eq!(
            json("SELECT to_jsonb(count(*)) FROM mfa.events WHERE details->>'mfa_phone_number' = '+*******2671'"),
            1
        );
    }

    fn as_login_with(role: &str) {
        run(&format!(
            "CREATE ROLE test_login_{role} LOGIN; GRANT {role} TO test_login_{role}; SET ROLE test_login_{role}"
        ));
    }

    #[pg_test]
    fn mfa_app_cannot_read_tables_nor_administer() {
        run("SELECT mfa.organization_upsert('org-1')");
        as_login_with("mfa_app");
        for table in [
            "organizations",
            "members",
            "totp_registrations",
            "recovery_codes",
            "sms_codes",
            "sms_outbox",
            "intermediate_sessions",
            "events",
            "country_code_allowlist",
            "database_keys",
        ] {
            assert!(
                error_of(&format!("SELECT * FROM mfa.{table}")).starts_with("42501 "),
                "{table} is readable"
            );
        }
        for call in [
            "mfa.organization_upsert('org-2')",
            "mfa.organization_get('org-1')",
            "mfa.organization_delete('org-1')",
            "mfa.member_upsert('org-1', 'x')",
            "mfa.member_get('org-1', 'x')",
            "mfa.member_unlock('org-1', 'x')",
            "mfa.member_delete('org-1', 'x')",
            "mfa._initialize_database_key()",
            "mfa._attempt_ledger_write('org-1', '[]')",
        ] {
            assert!(
                error_of(&format!("SELECT {call}")).starts_with("42501 "),
                "{call} is callable"
            );
        }
    }

    #[pg_test]
    fn a_plain_login_role_gets_nothing() {
        as_login_with("pg_monitor");
        assert!(error_of("SELECT * FROM mfa.organizations").starts_with("42501 "));
        assert!(error_of("SELECT mfa.organization_get('org-1')").starts_with("42501 "));
    }

    #[pg_test]
    fn mfa_admin_administers_but_reads_no_table() {
        as_login_with("mfa_admin");
        let o = json("SELECT mfa.organization_upsert('org-9', 'REQUIRED_FOR_ALL')");
        assert_eq!(o["mfa_policy"], "REQUIRED_FOR_ALL");
        assert!(error_of("SELECT * FROM mfa.organizations").starts_with("42501 "));
        // The audit event names the authenticated login (session_user), whatever role the
        // SECURITY DEFINER function runs as.
        run("RESET ROLE");
        assert_eq!(
            json("SELECT to_jsonb(actor = session_user) FROM mfa.events WHERE organization_id = 'org-9'"),
            true
        );
    }

    #[pg_test]
    fn definer_functions_pin_their_search_path() {
        let unsafe_functions = json(
            "SELECT coalesce(jsonb_agg(p.proname), '[]') FROM pg_proc p
              WHERE p.pronamespace = 'mfa'::regnamespace
                AND p.prosecdef
                AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)",
        );
        assert_eq!(unsafe_functions, serde_json::json!([]));
        let undocumented = json(
            "SELECT coalesce(jsonb_agg(p.proname), '[]') FROM pg_proc p
              WHERE p.pronamespace = 'mfa'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL",
        );
        assert_eq!(undocumented, serde_json::json!([]));
        let undocumented_tables = json(
            "SELECT coalesce(jsonb_agg(c.relname), '[]') FROM pg_class c
              WHERE c.relnamespace = 'mfa'::regnamespace AND c.relkind = 'r'
                AND obj_description(c.oid, 'pg_class') IS NULL",
        );
        assert_eq!(undocumented_tables, serde_json::json!([]));
    }
}
