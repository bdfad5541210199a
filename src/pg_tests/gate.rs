//! The guard of a sessions table inside one backend: what session_table_guard accepts, the gate
//! on columns of either text type, step-up tokens at the INSERT gates, the assurance functions on
//! any input. (Attacks over real connections by a non-superuser owner: tests/integration.)

#[pgrx::pg_schema]
mod tests {
    use crate::pg_tests::{assert_error, error_of, json, run};
    use pgrx::prelude::*;
    use serde_json::json;

    /// `setup`, and `s`, a guarded sessions table keyed by `id` (for upserts).
    fn setup_with_guarded_sessions() {
        setup();
        run(
            "CREATE TABLE s (id int PRIMARY KEY, organization_id text, member_id text,
                             intermediate_session_token text, authentication_factors jsonb);
             SELECT mfa.session_table_guard('s')",
        );
    }

    fn setup() {
        run("SELECT mfa.organization_upsert('org-g', 'REQUIRED_FOR_ALL');
             SELECT mfa.member_upsert('org-g', 'ann');
             SELECT mfa.totp_migrate('org-g', 'ann', 'JBSWY3DPEHPK3PXP', ARRAY['aaaa-bbbb-cccc', 'dddd-eeee-ffff'])");
    }

    fn token(sql: &str) -> String {
        json(sql)["intermediate_session_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn proven_login() -> String {
        proven_login_with("aaaa-bbbb-cccc")
    }

    #[pg_test]
    fn the_guard_accepts_only_what_it_can_protect() {
        setup();
        run("CREATE TABLE g_ok (organization_id varchar(128), member_id varchar, intermediate_session_token text,
                                authentication_factors jsonb);
             CREATE TABLE g_json (organization_id text, member_id text, intermediate_session_token text,
                                  authentication_factors json);
             CREATE TABLE g_generated (organization_id text, member_id text, intermediate_session_token text,
                                       authentication_factors jsonb, m text GENERATED ALWAYS AS (member_id) STORED);
             CREATE TEMP TABLE g_temp (organization_id text, member_id text, intermediate_session_token text,
                                       authentication_factors jsonb);
             CREATE VIEW g_view AS SELECT * FROM g_ok");
        for sql in [
            "SELECT mfa.session_table_guard('g_json')",
            "SELECT mfa.session_table_guard('g_generated', member_column => 'm')",
            "SELECT mfa.session_table_guard('g_temp')",
            "SELECT mfa.session_table_guard('g_view')",
            "SELECT mfa.session_table_guard('mfa.members')",
            "SELECT mfa.session_table_guard('g_ok', token_column => 'nope')",
            "SELECT mfa.session_table_guard('g_ok', member_column => NULL)",
            "SELECT mfa.session_table_unguard('g_ok')",
        ] {
            assert_error(sql, "22023", "invalid_argument");
        }
        run("SELECT mfa.session_table_guard('g_ok')");
        assert_eq!(
            json("SELECT to_jsonb(mfa.session_table_guard_check('g_ok'))"),
            serde_json::Value::Null
        );
        // varchar columns work like text.
        let t = proven_login();
        run(&format!(
            "INSERT INTO g_ok VALUES ('org-g', 'ann', '{t}', NULL)"
        ));
        assert_eq!(
            json("SELECT to_jsonb(mfa.session_aal(authentication_factors)) FROM g_ok"),
            "aal2"
        );
        assert_error(
            "UPDATE g_ok SET member_id = 'bob'",
            "28000",
            "insufficient_factors",
        );
        // The trigger function on its own, or with other arguments, refuses.
        run("CREATE TABLE g_hand (a text)");
        assert_error(
            "CREATE TRIGGER t BEFORE INSERT ON g_hand FOR EACH ROW EXECUTE FUNCTION mfa.session_gate('a');
             INSERT INTO g_hand VALUES ('x')",
            "22023",
            "invalid_argument",
        );
        // Called as a function it does nothing but fail (pgrx's trigger wrapper reports it as an
        // internal error).
        assert_ne!(error_of("SELECT mfa.session_gate()"), "no error");
    }

    #[pg_test]
    fn a_step_up_token_creates_no_session_through_any_gate() {
        setup();
        run(
            "CREATE TABLE legacy (org text, member text, token text, factors jsonb);
             CREATE TRIGGER gate BEFORE INSERT ON legacy FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'token', 'factors')",
        );
        let step_up = token("SELECT mfa.step_up_start('org-g', 'ann')");
        let answer = json("SELECT mfa.step_up_start('org-g', 'ann')");
        assert_eq!(answer["member_authenticated"], false);
        assert!(
            answer["mfa_required"]["member_options"].is_object(),
            "{answer}"
        );
        let r = json(&format!(
            "SELECT mfa.recovery_codes_recover('org-g', 'ann', 'dddd-eeee-ffff', '{step_up}')"
        ));
        assert_eq!(r["status_code"], 200, "{r}");
        assert_eq!(
            r["authentication_factors"][0]["type"], "recovery_codes",
            "a step-up token starts with no factor: {r}"
        );
        for sql in [
            format!("SELECT mfa.check_session_policy('org-g', 'ann', '{step_up}')"),
            format!("INSERT INTO legacy VALUES ('org-g', 'ann', '{step_up}')"),
        ] {
            assert_error(&sql, "28000", "insufficient_factors");
        }
    }

    #[pg_test]
    fn an_upsert_cannot_step_up_with_the_token_its_insert_arm_consumed() {
        setup_with_guarded_sessions();
        let t = proven_login();
        run(&format!("INSERT INTO s VALUES (1, 'org-g', 'ann', '{t}')"));
        // Its INSERT arm consumed the new login's token, so its UPDATE arm has nothing to step up
        // with: a re-login writes a new session row instead.
        let t2 = proven_login_with("dddd-eeee-ffff");
        assert_error(
            &format!("INSERT INTO s VALUES (1, 'org-g', 'ann', '{t2}') ON CONFLICT (id)
                      DO UPDATE SET intermediate_session_token = EXCLUDED.intermediate_session_token"),
            "28000",
            "insufficient_factors",
        );
    }

    /// A session's event is written with its row: an upsert that meets a conflict writes none (its
    /// login is recorded as given up when the transaction commits: tests/integration/login_audit).
    #[pg_test]
    fn the_session_event_is_written_with_its_row() {
        setup_with_guarded_sessions();
        let allowed = || {
            json(
                "SELECT to_jsonb(count(*)) FROM mfa.events
                  WHERE member_id = 'ann' AND event_type = 'session.allowed'",
            )
        };
        let t = proven_login();
        run(&format!("INSERT INTO s VALUES (1, 'org-g', 'ann', '{t}')"));
        assert_eq!(allowed(), 1);
        let t2 = proven_login_with("dddd-eeee-ffff");
        run(&format!(
            "INSERT INTO s VALUES (1, 'org-g', 'ann', '{t2}') ON CONFLICT (id) DO NOTHING"
        ));
        assert_eq!(allowed(), 1, "no session row, no session event");
    }

    fn proven_login_with(code: &str) -> String {
        let t = token("SELECT mfa.primary_authenticate('org-g', 'ann')");
        let r = json(&format!(
            "SELECT mfa.recovery_codes_recover('org-g', 'ann', '{code}', '{t}')"
        ));
        assert_eq!(r["status_code"], 200, "{r}");
        t
    }

    #[pg_test]
    fn assurance_functions_take_any_jsonb() {
        let cases = [
            ("NULL", "aal1", None),
            ("'{}'", "aal1", None),
            ("'\"totp\"'", "aal1", None),
            ("'[null, 1, \"x\", []]'", "aal1", None),
            (
                "'[{\"type\": \"password\", \"last_authenticated_at\": \"2026-01-01T00:00:00+00:00\"}]'",
                "aal1",
                None,
            ),
            (
                "'[{\"type\": \"totp\", \"last_authenticated_at\": \"garbage\"}]'",
                "aal2",
                None,
            ),
            (
                "'[{\"type\": \"otp\", \"delivery_method\": \"sms\", \"last_authenticated_at\": \"2026-01-01T00:00:00+00:00\"},
                   {\"type\": \"recovery_codes\", \"last_authenticated_at\": \"2026-02-01T00:00:00.5+00:00\"}]'",
                "aal2",
                Some("2026-02-01T00:00:00.5+00:00"),
            ),
            // An SMS factor is otp delivered by sms; otp by e-mail is no second factor here.
            (
                "'[{\"type\": \"otp\", \"delivery_method\": \"email\", \"last_authenticated_at\": \"2026-01-01T00:00:00+00:00\"}]'",
                "aal1",
                None,
            ),
        ];
        for (factors, aal, last) in cases {
            assert_eq!(
                json(&format!(
                    "SELECT to_jsonb(mfa.session_aal({factors}::jsonb))"
                )),
                aal,
                "{factors}"
            );
            let got = json(&format!(
                "SELECT to_jsonb(mfa.last_mfa_at({factors}::jsonb) = {})",
                last.map(|l| format!("'{l}'::timestamptz"))
                    .unwrap_or("NULL".into())
            ));
            let is_null = json(&format!(
                "SELECT to_jsonb(mfa.last_mfa_at({factors}::jsonb) IS NULL)"
            ));
            match last {
                Some(_) => assert_eq!(got, json!(true), "{factors}"),
                None => assert_eq!(is_null, json!(true), "{factors}"),
            }
        }
    }
}
