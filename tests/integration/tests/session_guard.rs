//! The guard of the application's sessions table, attacked as a real deployment's application
//! role would: a non-superuser login role holding `mfa_app` that owns the sessions table and its
//! schema, over real connections. Every attack is refused and leaves the table as it was; step-up
//! raises a session's assurance once per token, also under a race; partitions stay guarded.
//! The last test shows the same attacks succeeding against a table protected the 0.3.0 way (a
//! hand-made `enforce_session_policy` trigger), which is why `session_table_guard` exists.

mod common;
use common::*;
use postgres::Client;
use serde_json::Value;

/// A guarded deployment: an organization that requires MFA (member `victim`, with an app) and an
/// optional one (member `me`, no factor), a non-superuser owner of `<schema>.sessions` and an
/// administrator role with `mfa_admin` that guarded it.
struct Deployment {
    owner: Client,
    superuser: Client,
    required: String,
    optional: String,
    schema: String,
    owner_role: String,
}

const SECRET: &str = "JBSWY3DPEHPK3PXP";
/// The victim's recovery codes, imported with the app.
const RECOVERY_CODES: [&str; 2] = ["aaaa-bbbb-cccc", "dddd-eeee-ffff"];

fn as_role(role: &str) -> Client {
    connect_to(&database_url_as(role))
}

fn deployment(prefix: &str, guarded: bool) -> Deployment {
    let mut superuser = connect();
    let required = new_organization(&mut superuser, &format!("{prefix}-req"));
    json(
        &mut superuser,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&required],
    );
    json(
        &mut superuser,
        "SELECT mfa.member_upsert($1, 'victim')",
        &[&required],
    );
    json(
        &mut superuser,
        "SELECT mfa.totp_migrate($1, 'victim', $2, $3)",
        &[
            &required,
            &SECRET,
            &RECOVERY_CODES.map(String::from).to_vec(),
        ],
    );
    let optional = organization_with_member(&mut superuser, &format!("{prefix}-opt"), "me");
    let (owner_role, admin_role, schema) = application_roles(&mut superuser, prefix);
    let mut owner = as_role(&owner_role);
    owner
        .batch_execute(&format!(
            "CREATE TABLE {schema}.sessions (
                 id serial PRIMARY KEY, organization_id text NOT NULL, member_id text NOT NULL,
                 intermediate_session_token text, authentication_factors jsonb, last_seen_at timestamptz)"
        ))
        .unwrap();
    if guarded {
        as_role(&admin_role)
            .execute(
                &format!("SELECT mfa.session_table_guard('{schema}.sessions')"),
                &[],
            )
            .unwrap();
    } else {
        owner
            .batch_execute(&format!(
                "CREATE TRIGGER require_mfa BEFORE INSERT ON {schema}.sessions FOR EACH ROW
                 EXECUTE FUNCTION mfa.enforce_session_policy('organization_id', 'member_id',
                                                             'intermediate_session_token', 'authentication_factors')"
            ))
            .unwrap_or_else(|_| {
                // The owner may lack EXECUTE on the trigger function; the superuser creates it.
                superuser
                    .batch_execute(&format!(
                        "CREATE TRIGGER require_mfa BEFORE INSERT ON {schema}.sessions FOR EACH ROW
                         EXECUTE FUNCTION mfa.enforce_session_policy('organization_id', 'member_id',
                                                                     'intermediate_session_token', 'authentication_factors')"
                    ))
                    .unwrap()
            });
    }
    Deployment {
        owner,
        superuser,
        required,
        optional,
        schema,
        owner_role,
    }
}

impl Deployment {
    /// A session of `me` in the optional organization, created through the gate; its id.
    fn my_session(&mut self) -> i32 {
        let (_, token) = start_login(&mut self.owner, &self.optional, "me");
        self.owner
            .query_one(
                &format!(
                    "INSERT INTO {}.sessions (organization_id, member_id, intermediate_session_token)
                     VALUES ($1, 'me', $2) RETURNING id",
                    self.schema
                ),
                &[&self.optional, &token],
            )
            .unwrap()
            .get(0)
    }

    /// Every session row, as text, to compare before and after an attack.
    fn rows(&mut self) -> Vec<String> {
        self.superuser
            .query(
                &format!("SELECT s::text FROM {}.sessions s ORDER BY id", self.schema),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The member of every session row.
    fn session_members(&mut self) -> Vec<String> {
        self.superuser
            .query(
                &format!("SELECT member_id FROM {}.sessions ORDER BY id", self.schema),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Runs `sql` as the owner (`{s}` is the schema) and returns its SQLSTATE, "" when it passed.
    fn attempt(&mut self, sql: &str) -> String {
        let sql = sql.replace("{s}", &self.schema);
        match self.owner.batch_execute(&sql) {
            Ok(()) => String::new(),
            Err(e) => sql_error(&e).0,
        }
    }

    /// Asserts that `sql`, run by the owner, fails with `sqlstate` and changes no session row.
    #[track_caller]
    fn refused(&mut self, sql: &str, sqlstate: &str) {
        let before = self.rows();
        let got = self.attempt(sql);
        assert_eq!(got, sqlstate, "{sql}");
        assert_eq!(self.rows(), before, "{sql} changed a session row");
    }
}

/// The attacks on the rows: identity and factors through UPDATE, upsert and MERGE, a trigger that
/// rewrites the row after the gate, COPY without a token.
#[test]
fn the_owner_cannot_forge_a_session_through_any_write_path() {
    let mut d = deployment("rows", true);
    let id = d.my_session();
    let (req, opt) = (d.required.clone(), d.optional.clone());
    d.refused(
        &format!("UPDATE {{s}}.sessions SET organization_id = '{req}', member_id = 'victim' WHERE id = {id}"),
        "28000",
    );
    d.refused(
        &format!("UPDATE {{s}}.sessions SET authentication_factors = '[{{\"type\": \"totp\", \"delivery_method\": \"authenticator_app\"}}]' WHERE id = {id}"),
        "28000",
    );
    // The upsert's INSERT arm carries a valid token of the attacker's own; its UPDATE arm moves
    // the existing session to the victim.
    let (_, token) = start_login(&mut d.owner, &opt, "me");
    d.refused(
        &format!(
            "INSERT INTO {{s}}.sessions (id, organization_id, member_id, intermediate_session_token)
             VALUES ({id}, '{opt}', 'me', '{token}')
             ON CONFLICT (id) DO UPDATE SET organization_id = '{req}', member_id = 'victim'"
        ),
        "28000",
    );
    d.refused(
        &format!(
            "MERGE INTO {{s}}.sessions s USING (VALUES ({id})) v(id) ON s.id = v.id
             WHEN MATCHED THEN UPDATE SET organization_id = '{req}', member_id = 'victim'"
        ),
        "28000",
    );
    d.refused(
        &format!(
            "MERGE INTO {{s}}.sessions s USING (VALUES ({id})) v(id) ON s.id = v.id
             WHEN MATCHED THEN UPDATE SET authentication_factors = '[]'"
        ),
        "28000",
    );
    // No token, no session, also through COPY and MERGE's INSERT arm.
    d.refused(
        &format!(
            "MERGE INTO {{s}}.sessions s USING (VALUES (-1)) v(id) ON s.id = v.id
             WHEN NOT MATCHED THEN INSERT (organization_id, member_id) VALUES ('{req}', 'victim')"
        ),
        "28000",
    );
    // PostgreSQL 17's MERGE: an arm for the rows the source does not match, and RETURNING.
    if server_version_num(&mut d.superuser) >= 170000 {
        d.refused(
            &format!(
                "MERGE INTO {{s}}.sessions s USING (VALUES (-1)) v(id) ON s.id = v.id
                 WHEN NOT MATCHED BY SOURCE THEN UPDATE SET organization_id = '{req}', member_id = 'victim'"
            ),
            "28000",
        );
        d.refused(
            &format!(
                "MERGE INTO {{s}}.sessions s USING (VALUES (-1)) v(id) ON s.id = v.id
                 WHEN NOT MATCHED THEN INSERT (organization_id, member_id) VALUES ('{req}', 'victim')
                 RETURNING merge_action(), s.*"
            ),
            "28000",
        );
        // The legitimate path through MERGE … RETURNING: the row returned is the one the gate
        // wrote (the token consumed, the factors the login proved).
        let (_, token) = start_login(&mut d.owner, &opt, "me");
        let returned = d
            .owner
            .query_one(
                &format!(
                    "MERGE INTO {}.sessions s USING (VALUES ($1::text)) v(token) ON false
                     WHEN NOT MATCHED THEN INSERT (organization_id, member_id, intermediate_session_token)
                         VALUES ($2, 'me', v.token)
                     RETURNING merge_action(), s.authentication_factors::text",
                    d.schema
                ),
                &[&token, &opt],
            )
            .unwrap();
        assert_eq!(returned.get::<_, String>(0), "INSERT");
        let stored: String = d
            .superuser
            .query_one(
                &format!(
                    "SELECT authentication_factors::text FROM {}.sessions ORDER BY id DESC LIMIT 1",
                    d.schema
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(returned.get::<_, String>(1), stored);
        d.owner
            .batch_execute(&format!(
                "DELETE FROM {}.sessions WHERE id <> {id}",
                d.schema
            ))
            .unwrap();
    }
    let before = d.rows();
    let copied = (|| -> Result<u64, postgres::Error> {
        use std::io::Write;
        let mut w = d.owner.copy_in(&format!(
            "COPY {}.sessions (organization_id, member_id) FROM STDIN",
            d.schema
        ))?;
        w.write_all(format!("{req}\tvictim\n").as_bytes()).unwrap();
        w.finish()
    })();
    assert_eq!(sql_error(&copied.unwrap_err()).0, "28000");
    assert_eq!(d.rows(), before);

    // BEFORE triggers that sort after the gate's and rewrite the row it checked: moving it to the
    // victim, or forging the factors the gate wrote.
    for (name, body, events) in [
        (
            "to_victim",
            format!("NEW.organization_id := '{req}'; NEW.member_id := 'victim';"),
            "INSERT OR UPDATE",
        ),
        (
            "forge",
            r#"NEW.authentication_factors := '[{"type": "totp"}]';"#.to_string(),
            "INSERT",
        ),
    ] {
        d.owner
            .batch_execute(&format!(
                "CREATE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN {body} RETURN NEW; END $$;
                 CREATE TRIGGER zzz_{name} BEFORE {events} ON {s}.sessions
                     FOR EACH ROW EXECUTE FUNCTION {s}.{name}();",
                s = d.schema
            ))
            .unwrap();
        let (_, token) = start_login(&mut d.owner, &opt, "me");
        d.refused(
            &format!(
                "INSERT INTO {{s}}.sessions (organization_id, member_id, intermediate_session_token)
                 VALUES ('{opt}', 'me', '{token}')"
            ),
            "28000",
        );
        if events.contains("UPDATE") {
            d.refused(
                &format!("UPDATE {{s}}.sessions SET last_seen_at = now() WHERE id = {id}"),
                "28000",
            );
        }
        d.owner
            .batch_execute(&format!("DROP TRIGGER zzz_{name} ON {}.sessions", d.schema))
            .unwrap();
    }
    // Nothing of the victim's was ever written; the honest session is still there.
    let victims: i64 = d
        .superuser
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.sessions WHERE member_id = 'victim'",
                d.schema
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(victims, 0);
    assert_eq!(d.rows().len(), 1);
}

/// The attacks by DDL: the owner cannot switch the guard off, in any of the ways PostgreSQL offers
/// an owner, and a partition that arrives with rows is refused.
#[test]
fn the_owner_cannot_switch_the_guard_off() {
    let mut d = deployment("ddl", true);
    d.my_session();
    for ddl in [
        "ALTER TABLE {s}.sessions DISABLE TRIGGER mfa_session_gate_insert",
        "ALTER TABLE {s}.sessions DISABLE TRIGGER ALL",
        "ALTER TABLE {s}.sessions DISABLE TRIGGER USER",
        "ALTER TABLE {s}.sessions ENABLE REPLICA TRIGGER mfa_session_gate_insert",
        "ALTER TABLE {s}.sessions ENABLE ALWAYS TRIGGER mfa_session_gate_update",
        "DROP TRIGGER mfa_session_gate_insert ON {s}.sessions",
        "DROP TRIGGER mfa_session_gate_verify_update ON {s}.sessions",
        "ALTER TRIGGER mfa_session_gate_insert ON {s}.sessions RENAME TO renamed",
        "CREATE OR REPLACE TRIGGER mfa_session_gate_verify_insert AFTER INSERT ON {s}.sessions
             FOR EACH ROW WHEN (false) EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "ALTER TABLE {s}.sessions RENAME COLUMN member_id TO member",
        "ALTER TABLE {s}.sessions RENAME COLUMN authentication_factors TO factors",
        "ALTER TABLE {s}.sessions DROP COLUMN intermediate_session_token CASCADE",
        "ALTER TABLE {s}.sessions RENAME TO old_sessions",
        "ALTER TABLE {s}.sessions SET SCHEMA public",
        "DROP TABLE {s}.sessions",
        "DROP SCHEMA {s} CASCADE",
        "CREATE TABLE {s}.more_sessions () INHERITS ({s}.sessions)",
        "CREATE TABLE {s}.look_alike (LIKE {s}.sessions); ALTER TABLE {s}.look_alike INHERIT {s}.sessions",
        // A column renamed into a guarded column's place.
        "ALTER TABLE {s}.sessions ADD COLUMN fake text; UPDATE {s}.sessions SET fake = 'victim';
         ALTER TABLE {s}.sessions DROP COLUMN member_id CASCADE; ALTER TABLE {s}.sessions RENAME COLUMN fake TO member_id",
        // The same inside an exception block that hides nothing: the error still stops it.
        "DO $$ BEGIN EXECUTE 'ALTER TABLE {s}.sessions DISABLE TRIGGER ALL'; END $$",
    ] {
        d.refused(&format!("BEGIN; {ddl}; COMMIT"), "42501");
        d.owner.batch_execute("ROLLBACK").unwrap();
    }
    let intact: Option<String> = d
        .superuser
        .query_one(
            &format!(
                "SELECT mfa.session_table_guard_check('{}.sessions')",
                d.schema
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(intact, None);
    // DDL that leaves the guard whole is the owner's as before.
    assert_eq!(
        d.attempt("ALTER TABLE {s}.sessions ADD COLUMN user_agent text; CREATE INDEX ON {s}.sessions (member_id)"),
        ""
    );
    // A superuser is trusted, and re-guarding mends what a superuser broke. A guard a superuser
    // broke refuses nobody's DDL (DDL is judged by what it changed), until it is mended.
    d.superuser
        .batch_execute(&format!(
            "ALTER TABLE {}.sessions DISABLE TRIGGER mfa_session_gate_insert",
            d.schema
        ))
        .unwrap();
    assert_eq!(d.attempt("CREATE TABLE {s}.unrelated (x int)"), "");
    // Another owner's DDL is not refused for it: their own guard is whole.
    let mut other = deployment("ddl-other", true);
    assert_eq!(
        other.attempt("ALTER TABLE {s}.sessions ADD COLUMN user_agent text"),
        ""
    );
    assert_eq!(
        other.attempt("ALTER TABLE {s}.sessions DISABLE TRIGGER mfa_session_gate_insert"),
        "42501"
    );
    d.superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{}.sessions')", d.schema),
            &[],
        )
        .unwrap();
    assert_eq!(d.attempt("CREATE TABLE {s}.unrelated2 (x int)"), "");
    assert_eq!(
        d.attempt("ALTER TABLE {s}.sessions DISABLE TRIGGER mfa_session_gate_insert"),
        "42501"
    );
}

/// A partitioned sessions table: partitions created or attached later carry the guard, cannot be
/// switched off one by one, and cannot arrive with rows that never met the gate.
#[test]
fn partitions_of_a_guarded_table_stay_guarded() {
    let mut d = deployment("parts", true);
    let s = d.schema.clone();
    let (req, opt) = (d.required.clone(), d.optional.clone());
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.psessions (organization_id text NOT NULL, member_id text NOT NULL,
                 intermediate_session_token text, authentication_factors jsonb)
                 PARTITION BY LIST (organization_id);
             CREATE TABLE {s}.p_opt PARTITION OF {s}.psessions FOR VALUES IN ('{opt}');"
        ))
        .unwrap();
    d.superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{s}.psessions')"),
            &[],
        )
        .unwrap();
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.p_req PARTITION OF {s}.psessions FOR VALUES IN ('{req}')"
        ))
        .unwrap();
    // Straight into a partition, old or new: no token, no row.
    for partition in ["p_opt", "p_req"] {
        let sql = format!(
            "INSERT INTO {s}.{partition} (organization_id, member_id) VALUES ('{}', '{}')",
            if partition == "p_opt" { &opt } else { &req },
            if partition == "p_opt" { "me" } else { "victim" }
        );
        assert_eq!(d.attempt(&sql), "28000", "{sql}");
    }
    assert_eq!(
        d.attempt("ALTER TABLE {s}.p_req DISABLE TRIGGER ALL"),
        "42501"
    );
    // A table filled beforehand, then attached: refused. The same table emptied: guarded.
    let other = organization_with_member(&mut d.superuser, "parts-other", "victim");
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.filled (LIKE {s}.psessions);
             INSERT INTO {s}.filled VALUES ('{other}', 'victim', NULL, '[{{\"type\": \"totp\"}}]')"
        ))
        .unwrap();
    assert_eq!(
        d.attempt(&format!(
            "ALTER TABLE {s}.psessions ATTACH PARTITION {s}.filled FOR VALUES IN ('{other}')"
        )),
        "42501"
    );
    assert_eq!(
        d.attempt(&format!("TRUNCATE {s}.filled; ALTER TABLE {s}.psessions ATTACH PARTITION {s}.filled FOR VALUES IN ('{other}')")),
        ""
    );
    assert_eq!(
        d.attempt(&format!(
            "INSERT INTO {s}.filled (organization_id, member_id) VALUES ('{other}', 'victim')"
        )),
        "28000"
    );
    let filled: i64 = d
        .superuser
        .query_one(&format!("SELECT count(*) FROM {s}.psessions"), &[])
        .unwrap()
        .get(0);
    assert_eq!(filled, 0);
    // And the partitioned table works for a real login.
    let (_, token) = start_login(&mut d.owner, &opt, "me");
    d.owner
        .execute(
            &format!("INSERT INTO {s}.psessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'me', $2)"),
            &[&opt, &token],
        )
        .unwrap();
}

/// A decision rolled back with its savepoint cannot be reused: the token it had consumed is live
/// again, and a row rewritten to it after the gate is refused.
#[test]
fn a_rolled_back_decision_cannot_be_replayed() {
    let mut d = deployment("replay", true);
    let (s, opt) = (d.schema.clone(), d.optional.clone());
    let (_, first) = start_login(&mut d.owner, &opt, "me");
    let (_, second) = start_login(&mut d.owner, &opt, "me");
    // A trigger after the gate that skips rows (the decision is made, no row is written), and one
    // that swaps in the first token.
    d.owner
        .batch_execute(&format!(
            "CREATE FUNCTION {s}.skip() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF current_setting('replay.skip', true) = 'on' THEN RETURN NULL; END IF; RETURN NEW; END $$;
             CREATE TRIGGER zzz_skip BEFORE INSERT ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.skip();
             CREATE FUNCTION {s}.swap() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF current_setting('replay.swap', true) <> '' THEN
                 NEW.intermediate_session_token := current_setting('replay.swap');
                 NEW.authentication_factors := current_setting('replay.factors')::jsonb; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER zzzz_swap BEFORE INSERT ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.swap();"
        ))
        .unwrap();
    // The factors the gate writes for the first token are no secret to the attacker.
    let first_factors: Value = d
        .superuser
        .query_one(
            "SELECT factors || proven_factors FROM mfa.intermediate_sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&first],
        )
        .unwrap()
        .get(0);
    let got = d.attempt(&format!(
        "BEGIN;
         SAVEPOINT a;
         SET LOCAL replay.skip = 'on';
         INSERT INTO {s}.sessions (organization_id, member_id, intermediate_session_token) VALUES ('{opt}', 'me', '{first}');
         ROLLBACK TO SAVEPOINT a;
         SET LOCAL replay.skip = 'off';
         SET LOCAL replay.swap = '{first}';
         SET LOCAL replay.factors = '{first_factors}';
         INSERT INTO {s}.sessions (organization_id, member_id, intermediate_session_token) VALUES ('{opt}', 'me', '{second}');
         COMMIT"
    ));
    d.owner.batch_execute("ROLLBACK").unwrap();
    assert_eq!(got, "28000");
    assert!(d.rows().is_empty());
}

/// Step-up as an application does it, and two requests racing to use one step-up token on two
/// sessions of the member: one wins.
#[test]
fn a_step_up_raises_assurance_once_per_token_even_under_a_race() {
    let mut d = deployment("stepup", true);
    let (s, req) = (d.schema.clone(), d.required.clone());
    let code = |i: usize| RECOVERY_CODES[i].to_string();
    // Two honest sessions of the victim: one with the app, one with a recovery code.
    let mut session = |proof: &str, arg: String| -> i32 {
        let (_, token) = start_login(&mut d.owner, &req, "victim");
        let ok = json(
            &mut d.owner,
            &format!("SELECT mfa.{proof}($1, 'victim', $2, $3)"),
            &[&req, &arg, &token],
        );
        assert_eq!(ok["status_code"], 200, "{ok}");
        d.owner
            .query_one(
                &format!("INSERT INTO {s}.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'victim', $2) RETURNING id"),
                &[&req, &token],
            )
            .unwrap()
            .get(0)
    };
    let first = session("totp_authenticate", totp_now(SECRET));
    let second = session("recovery_codes_recover", code(0));
    let factors = |c: &mut Client, id: i32| -> Vec<String> {
        let f: Value = c
            .query_one(
                &format!("SELECT authentication_factors FROM {s}.sessions WHERE id = $1"),
                &[&id],
            )
            .unwrap()
            .get(0);
        f.as_array()
            .unwrap()
            .iter()
            .map(|x| x["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(factors(&mut d.owner, first), ["password", "totp"]);
    let step_up = token_of(&json(
        &mut d.owner,
        "SELECT mfa.step_up_start($1, 'victim')",
        &[&req],
    ));
    let recovered = json(
        &mut d.owner,
        "SELECT mfa.recovery_codes_recover($1, 'victim', $2, $3)",
        &[&req, &code(1), &step_up],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let (owner_role, table) = (d.owner_role.clone(), format!("{s}.sessions"));
    let results = race(2, move |c, i| {
        c.batch_execute(&format!("SET ROLE {owner_role}")).unwrap();
        c.execute(
            &format!("UPDATE {table} SET intermediate_session_token = $1 WHERE id = $2"),
            &[&step_up, &[first, second][i]],
        )
        .map_err(|e| sql_error(&e).0)
    });
    let lost: Vec<_> = results.iter().filter_map(|r| r.clone().err()).collect();
    assert_eq!(lost, vec!["28000".to_string()], "{results:?}");
    let winner = if results[0].is_ok() { first } else { second };
    let loser = if winner == first { second } else { first };
    assert_eq!(
        factors(&mut d.owner, winner).last().unwrap(),
        "recovery_codes"
    );
    assert_eq!(
        factors(&mut d.owner, winner).len(),
        3 - usize::from(winner == second)
    );
    assert_eq!(factors(&mut d.owner, loser).len(), 2);
    let aal: String = d
        .owner
        .query_one(
            &format!(
                "SELECT mfa.session_aal(authentication_factors) FROM {s}.sessions WHERE id = $1"
            ),
            &[&winner],
        )
        .unwrap()
        .get(0);
    assert_eq!(aal, "aal2");
}

/// Why 0.4.0 exists: a table protected the 0.3.0 way lets its owner forge sessions. (This test
/// passes because the attacks succeed there; the tests above are the same attacks refused.)
#[test]
fn a_hand_made_0_3_0_trigger_still_gates_inserts_but_not_the_rest() {
    let mut d = deployment("legacy", false);
    let req = d.required.clone();
    // Its INSERT gate still works as in 0.3.0.
    assert_eq!(
        d.attempt(&format!(
            "INSERT INTO {{s}}.sessions (organization_id, member_id) VALUES ('{req}', 'victim')"
        )),
        "28000"
    );
    let id = d.my_session();
    assert_eq!(
        d.attempt(&format!("UPDATE {{s}}.sessions SET organization_id = '{req}', member_id = 'victim' WHERE id = {id}")),
        ""
    );
    assert_eq!(
        d.attempt("ALTER TABLE {s}.sessions DISABLE TRIGGER require_mfa"),
        ""
    );
    // Guarding it replaces the hand-made trigger and closes both.
    d.superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{}.sessions')", d.schema),
            &[],
        )
        .unwrap();
    let triggers: Vec<String> = d
        .superuser
        .query(
            &format!("SELECT tgname::text FROM pg_trigger WHERE tgrelid = '{}.sessions'::regclass ORDER BY 1", d.schema),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        triggers,
        [
            "mfa_session_gate_insert",
            "mfa_session_gate_update",
            "mfa_session_gate_verify_insert",
            "mfa_session_gate_verify_update"
        ]
    );
    d.refused(
        &format!("UPDATE {{s}}.sessions SET member_id = 'someone' WHERE id = {id}"),
        "28000",
    );
}

/// A genuine second-factor session of the victim (the TOTP app), through the gate; its id.
fn victim_session(d: &mut Deployment) -> i32 {
    let (s, req) = (d.schema.clone(), d.required.clone());
    let (_, token) = start_login(&mut d.owner, &req, "victim");
    let ok = json(
        &mut d.owner,
        "SELECT mfa.totp_authenticate($1, 'victim', $2, $3)",
        &[&req, &totp_now(SECRET), &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    d.owner
        .query_one(
            &format!("INSERT INTO {s}.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'victim', $2) RETURNING id"),
            &[&req, &token],
        )
        .unwrap()
        .get(0)
}

/// What an RLS policy would read of a session row: the bound assurance functions.
fn assurance(c: &mut Client, schema: &str, id: i32) -> (String, Option<std::time::SystemTime>) {
    let row = c
        .query_one(
            &format!(
                "SELECT mfa.session_aal(organization_id, member_id, authentication_factors),
                        mfa.last_mfa_at(organization_id, member_id, authentication_factors)
                   FROM {schema}.sessions WHERE id = $1"
            ),
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// An extra trigger that calls the gate with shadow columns, and a trigger of the owner's that
/// copies them into the real ones: refused when created, and refused when run should one exist
/// (a superuser put it there).
#[test]
fn only_the_guards_own_triggers_decide() {
    let mut d = deployment("extra", true);
    let (s, req) = (d.schema.clone(), d.required.clone());
    let id = d.my_session();
    d.owner
        .batch_execute(&format!(
            "UPDATE {s}.sessions SET intermediate_session_token = NULL WHERE id = {id};
             ALTER TABLE {s}.sessions ADD COLUMN f_org text, ADD COLUMN f_mem text,
                                      ADD COLUMN k text DEFAULT 'x', ADD COLUMN f_factors jsonb;
             CREATE FUNCTION {s}.copy() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.k IS NULL AND OLD.k IS NOT NULL THEN
                 NEW.organization_id := NEW.f_org; NEW.member_id := NEW.f_mem;
                 NEW.authentication_factors := NEW.f_factors; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER zzz_copy BEFORE UPDATE ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.copy();"
        ))
        .unwrap();
    let extra = format!(
        "CREATE TRIGGER aaa BEFORE UPDATE OF k ON {s}.sessions FOR EACH ROW
         EXECUTE FUNCTION mfa.session_gate('f_org', 'f_mem', 'k', 'f_factors')"
    );
    let extra_insert = format!(
        "CREATE TRIGGER aab BEFORE INSERT ON {s}.sessions FOR EACH ROW
         EXECUTE FUNCTION mfa.session_gate('f_org', 'f_mem', 'k', 'f_factors')"
    );
    d.refused(&extra, "42501");
    d.refused(&extra_insert, "42501");
    // Nor on a table of its own, to call the gate from there.
    d.refused(
        &format!(
            "CREATE TABLE {s}.shadow (o text, m text, t text, f jsonb);
             CREATE TRIGGER g BEFORE INSERT ON {s}.shadow FOR EACH ROW EXECUTE FUNCTION mfa.session_gate('o', 'm', 't', 'f')"
        ),
        "42501",
    );
    // Had the extra trigger got there (a superuser did it here), it is refused when it runs.
    d.superuser.batch_execute(&extra).unwrap();
    let forged = r#"[{"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": "2099-01-01T00:00:00Z"}]"#;
    d.refused(
        &format!(
            "UPDATE {{s}}.sessions SET f_org = '{req}', f_mem = 'victim', f_factors = '{forged}' WHERE id = {id};
             UPDATE {{s}}.sessions SET k = NULL WHERE id = {id}"
        ),
        "28000",
    );
    assert_eq!(d.session_members(), ["me"]);
}

/// DDL run under SET ROLE from a SECURITY DEFINER function of the owner's is judged by what it
/// changed, not by the role setting; so is a trigger made to depend on an extension.
#[test]
fn ddl_is_judged_by_what_it_changed() {
    let mut d = deployment("definer", true);
    let s = d.schema.clone();
    d.my_session();
    d.owner
        .batch_execute(&format!(
            "CREATE FUNCTION {s}.off() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN EXECUTE 'ALTER TABLE {s}.sessions DISABLE TRIGGER USER'; END $$;
             CREATE FUNCTION {s}.drop_gate() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN EXECUTE 'DROP TRIGGER mfa_session_gate_insert ON {s}.sessions'; END $$;
             GRANT USAGE ON SCHEMA {s} TO mfa_app;
             GRANT EXECUTE ON FUNCTION {s}.off(), {s}.drop_gate() TO mfa_app;"
        ))
        .unwrap();
    d.refused("SET ROLE mfa_app; SELECT {s}.off()", "42501");
    d.owner.batch_execute("RESET ROLE").unwrap();
    d.refused("SET ROLE mfa_app; SELECT {s}.drop_gate()", "42501");
    d.owner.batch_execute("RESET ROLE").unwrap();
    d.refused(
        "ALTER TRIGGER mfa_session_gate_insert ON {s}.sessions DEPENDS ON EXTENSION plpgsql",
        "42501",
    );
    let intact: Option<String> = d
        .superuser
        .query_one(
            &format!("SELECT mfa.session_table_guard_check('{s}.sessions')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(intact, None);
}

/// A decision no row used (an upsert that met a conflict after the gate consumed a real login's
/// token) cannot be carried onto another row by a trigger that rewrites it.
#[test]
fn a_leftover_decision_cannot_move_another_row() {
    let mut d = deployment("leftover", true);
    let (s, req) = (d.schema.clone(), d.required.clone());
    let mine = d.my_session();
    let (_, token) = start_login(&mut d.owner, &req, "victim");
    let ok = json(
        &mut d.owner,
        "SELECT mfa.totp_authenticate($1, 'victim', $2, $3)",
        &[&req, &totp_now(SECRET), &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    d.owner
        .batch_execute(&format!(
            "ALTER TABLE {s}.sessions ADD COLUMN note text;
             CREATE TABLE {s}.stash (factors jsonb);
             CREATE FUNCTION {s}.stash() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO {s}.stash VALUES (NEW.authentication_factors); RETURN NEW; END $$;
             CREATE TRIGGER zzz_stash BEFORE INSERT ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.stash();
             CREATE FUNCTION {s}.rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.note = 'go' THEN
                 NEW.organization_id := '{req}'; NEW.member_id := 'victim';
                 NEW.intermediate_session_token := '{token}';
                 NEW.authentication_factors := (SELECT factors FROM {s}.stash LIMIT 1); END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER zzz_rewrite BEFORE UPDATE ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.rewrite();"
        ))
        .unwrap();
    let got = d.attempt(&format!(
        "BEGIN;
         INSERT INTO {s}.sessions (id, organization_id, member_id, intermediate_session_token)
         VALUES ({mine}, '{req}', 'victim', '{token}') ON CONFLICT (id) DO NOTHING;
         UPDATE {s}.sessions SET note = 'go' WHERE id = {mine};
         COMMIT"
    ));
    d.owner.batch_execute("ROLLBACK").unwrap();
    assert_eq!(got, "28000");
    assert_eq!(d.session_members(), ["me"]);
}

/// The guarded id and token columns compare bytes: a case-insensitive collation would let an
/// organization's session pass for another's.
#[test]
fn guarded_columns_need_deterministic_collations() {
    let mut d = deployment("collation", true);
    let s = d.schema.clone();
    if d
        .owner
        .batch_execute(&format!(
            "CREATE COLLATION {s}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
        ))
        .is_err()
    {
        eprintln!("skipped: this server has no ICU collations (nondeterministic collations need ICU)");
        return;
    }
    // Refused (PostgreSQL itself refuses to retype a column a trigger's WHEN clause names).
    let before = d.rows();
    assert_ne!(
        d.attempt("ALTER TABLE {s}.sessions ALTER COLUMN organization_id TYPE text COLLATE {s}.ci"),
        ""
    );
    assert_eq!(d.rows(), before);
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.ci_sessions (organization_id text COLLATE {s}.ci NOT NULL, member_id text NOT NULL,
                 intermediate_session_token text, authentication_factors jsonb)"
        ))
        .unwrap();
    let err = d
        .superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{s}.ci_sessions')"),
            &[],
        )
        .unwrap_err();
    assert_eq!(sql_error(&err).0, "22023", "{err}");
}

/// The assurance an RLS policy reads is sealed by the gate: a row that got past the triggers (a
/// superuser switched them off here, standing in for any hole) or factors copied from another
/// member's session carry none.
#[test]
fn assurance_is_sealed_to_its_member() {
    let mut d = deployment("sealed", true);
    let (s, req, opt) = (d.schema.clone(), d.required.clone(), d.optional.clone());
    let genuine = victim_session(&mut d);
    let (aal, at) = assurance(&mut d.owner, &s, genuine);
    assert_eq!(aal, "aal2");
    assert!(at.is_some());
    let factors: Value = d
        .owner
        .query_one(
            &format!("SELECT authentication_factors FROM {s}.sessions WHERE id = $1"),
            &[&genuine],
        )
        .unwrap()
        .get(0);
    let forged = r#"[{"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": "2099-01-01T00:00:00Z"}]"#;
    let copy_to_me = factors.to_string().replace('\'', "''");
    d.superuser
        .batch_execute(&format!(
            "ALTER TABLE {s}.sessions DISABLE TRIGGER USER;
             INSERT INTO {s}.sessions (organization_id, member_id, authentication_factors)
             VALUES ('{req}', 'victim', '{forged}'), ('{opt}', 'me', '{copy_to_me}'),
                    ('{req}', 'victim', '{copy_to_me}');
             ALTER TABLE {s}.sessions ENABLE TRIGGER USER"
        ))
        .unwrap();
    let rows: Vec<(i32, String, String)> = d
        .superuser
        .query(
            &format!("SELECT id, organization_id, member_id FROM {s}.sessions WHERE id <> $1 ORDER BY id"),
            &[&genuine],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 3);
    // Forged factors: no assurance.
    assert_eq!(
        assurance(&mut d.owner, &s, rows[0].0),
        ("aal1".into(), None)
    );
    // The victim's sealed factors on another member's row: no assurance.
    assert_eq!(
        assurance(&mut d.owner, &s, rows[1].0),
        ("aal1".into(), None)
    );
    // On another row of the same member they stay that member's proof (the owner could use the
    // original row as well): the seal binds the organization and the member.
    assert_eq!(assurance(&mut d.owner, &s, rows[2].0).0, "aal2");
    // Altering a sealed factor (a later time) breaks its seal.
    let mut later = factors.clone();
    for f in later.as_array_mut().unwrap() {
        if f["type"] == "totp" {
            f["last_authenticated_at"] = "2099-01-01T00:00:00Z".into();
        }
    }
    let verified: Value = d
        .owner
        .query_one(
            "SELECT mfa.session_verified_factors($1, 'victim', $2)",
            &[&req, &later],
        )
        .unwrap()
        .get(0);
    let types: Vec<&str> = verified
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["password"]);
}

/// A decision for a row that a later trigger skipped (here a "token cleared" on a session with a
/// second factor) cannot be claimed by an UPDATE of another session of the same member that a
/// trigger rewrites into a copy of it: a password-only session stays aal1.
#[test]
fn a_skipped_rows_decision_cannot_raise_another_session() {
    let mut d = deployment("skipped", true);
    let s = d.schema.clone();
    let strong = victim_session(&mut d);
    let weak = weak_victim_session_and_copier(&mut d, true);
    assert_eq!(assurance(&mut d.owner, &s, weak).0, "aal1");
    let got = d.attempt(&format!(
        "BEGIN;
         INSERT INTO {s}.stash SELECT authentication_factors FROM {s}.sessions WHERE id = {strong};
         SET LOCAL app.mode = 'skip';
         UPDATE {s}.sessions SET intermediate_session_token = NULL WHERE id = {strong};
         SET LOCAL app.mode = 'copy';
         UPDATE {s}.sessions SET last_seen_at = now() WHERE id = {weak};
         COMMIT"
    ));
    d.owner.batch_execute("ROLLBACK").unwrap();
    assert_eq!(got, "28000");
    assert_eq!(assurance(&mut d.owner, &s, weak).0, "aal1");
}

/// Only the guard's triggers seal: the factors `check_session_policy` answers (the 0.3.0 way, for
/// a table the application writes itself) carry no seal, so `mfa_app` cannot collect sealed
/// factors to place anywhere.
#[test]
fn check_session_policy_hands_out_no_sealed_factors() {
    let mut d = deployment("unsealed", true);
    let req = d.required.clone();
    let (_, token) = start_login(&mut d.owner, &req, "victim");
    let ok = json(
        &mut d.owner,
        "SELECT mfa.totp_authenticate($1, 'victim', $2, $3)",
        &[&req, &totp_now(SECRET), &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    let verified = json(
        &mut d.owner,
        "SELECT mfa.session_verified_factors($1, 'victim',
                    mfa.check_session_policy($1, 'victim', $2) -> 'authentication_factors')",
        &[&req, &token],
    );
    assert_eq!(verified, serde_json::json!([]));
}

/// The same skipped decision, claimed after a table rewrite put another session of the member at
/// the position the decision was made for: the decision is bound to the old row's contents too.
#[test]
fn a_skipped_rows_decision_survives_no_table_rewrite() {
    let mut d = deployment("rewrite", true);
    let s = d.schema.clone();
    let first = d.my_session();
    let strong = victim_session(&mut d);
    let weak = weak_victim_session_and_copier(&mut d, false);
    let got = d.attempt(&format!(
        "BEGIN;
         INSERT INTO {s}.stash SELECT authentication_factors FROM {s}.sessions WHERE id = {strong};
         SET LOCAL app.mode = 'skip';
         UPDATE {s}.sessions SET intermediate_session_token = NULL WHERE id = {strong};
         SET LOCAL app.mode = '';
         DELETE FROM {s}.sessions WHERE id = {first};
         ALTER TABLE {s}.sessions ADD COLUMN junk float8 DEFAULT random();
         SET LOCAL app.mode = 'copy';
         UPDATE {s}.sessions SET intermediate_session_token = NULL WHERE id = {weak};
         COMMIT"
    ));
    d.owner.batch_execute("ROLLBACK").unwrap();
    assert_eq!(got, "28000");
    assert_eq!(assurance(&mut d.owner, &s, weak).0, "aal1");
}

/// A session row of the victim with no factors (a superuser wrote it past the triggers: it stands
/// for a password-only session), and the owner's trigger that skips a row (`app.mode = 'skip'`)
/// or copies stashed factors into it (`'copy'`, also clearing the token when `clear_token`); the
/// row's id.
fn weak_victim_session_and_copier(d: &mut Deployment, clear_token: bool) -> i32 {
    let (s, req) = (d.schema.clone(), d.required.clone());
    d.superuser
        .batch_execute(&format!(
            "ALTER TABLE {s}.sessions DISABLE TRIGGER USER;
             INSERT INTO {s}.sessions (organization_id, member_id, authentication_factors)
             VALUES ('{req}', 'victim', '[]');
             ALTER TABLE {s}.sessions ENABLE TRIGGER USER"
        ))
        .unwrap();
    let clear = if clear_token {
        "NEW.intermediate_session_token := NULL;"
    } else {
        ""
    };
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.stash (factors jsonb);
             CREATE FUNCTION {s}.zz() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF current_setting('app.mode', true) = 'skip' THEN RETURN NULL; END IF;
               IF current_setting('app.mode', true) = 'copy' THEN
                  {clear}
                  NEW.authentication_factors := (SELECT factors FROM {s}.stash);
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER zz BEFORE UPDATE ON {s}.sessions FOR EACH ROW EXECUTE FUNCTION {s}.zz();"
        ))
        .unwrap();
    d.superuser
        .query_one(&format!("SELECT max(id) FROM {s}.sessions"), &[])
        .unwrap()
        .get(0)
}

/// A table is guarded only whole: an inheritance child made before the guard (rows in it are
/// read through the table, past the gate) makes session_table_guard refuse, instead of leaving a
/// guard marked broken that refuses nobody's DDL.
#[test]
fn a_table_is_guarded_only_whole() {
    let mut d = deployment("whole", false);
    let s = d.schema.clone();
    d.owner
        .batch_execute(&format!(
            "CREATE TABLE {s}.kid_sessions (LIKE {s}.sessions);
             CREATE TABLE {s}.kid () INHERITS ({s}.kid_sessions);"
        ))
        .unwrap();
    let err = d
        .superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{s}.kid_sessions')"),
            &[],
        )
        .expect_err("a table with an inheritance child is refused");
    let (state, message) = sql_error(&err);
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("inherit"), "{message}");
    // Nothing was left half-guarded: the owner's DDL elsewhere goes on.
    assert_eq!(d.attempt("CREATE TABLE {s}.unrelated (x int)"), "");
    // Without the child it is guarded, and the owner cannot switch it off.
    d.owner
        .batch_execute(&format!("DROP TABLE {s}.kid"))
        .unwrap();
    d.superuser
        .execute(
            &format!("SELECT mfa.session_table_guard('{s}.kid_sessions')"),
            &[],
        )
        .unwrap();
    d.refused("ALTER TABLE {s}.kid_sessions DISABLE TRIGGER USER", "42501");
}
