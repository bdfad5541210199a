//! Every public function of the extension, called with hostile values: each call succeeds or
//! raises one of the documented errors; the backend never crashes or panics into an internal
//! error, and afterwards the data is intact (indexes verified by amcheck, an untouched
//! organization still logs in, an injection canary still stands).
//!
//! 10,000 calls in `make test`; MFA_HOSTILE_CALLS sets another count (`make soak` uses 200,000);
//! MFA_HOSTILE_SEED replays a run (the seed is printed).

mod common;
use common::*;
use postgres::types::ToSql;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// SQLSTATEs the extension documents (README, Errors).
const DOCUMENTED: [&str; 6] = ["22023", "P0002", "28000", "42501", "53400", "55000"];

/// Ids the run creates first, so that many calls get past validation to the deeper code.
const KNOWN_ORG: &str = "hostile-org";
const KNOWN_MEMBER: &str = "m1";

fn hostile_texts() -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some(" ".into()),
        Some(KNOWN_ORG.into()),
        Some(KNOWN_MEMBER.into()),
        Some("'; DROP TABLE public.canary; --".into()),
        Some("\") OR 1=1; --".into()),
        Some("$1".into()),
        Some("%s%n%x".into()),
        Some("org\u{200B}".into()),
        Some("\u{202E}evil".into()),
        Some("ｏｒｇ".into()),
        Some("аdmin".into()), // Cyrillic а
        Some("🔐".into()),
        Some("e\u{301}".into()),
        Some("\u{FFFD}\u{FFFF}".into()),
        Some("\\x00\\xff".into()),
        Some("REQUIRED_FOR_ALL".into()),
        Some("required_for_all".into()),
        Some("Required_For_All".into()),
        Some("OPTIONAL".into()),
        Some("ALL_ALLOWED".into()),
        Some("RESTRICTED".into()),
        Some("sms_otp".into()),
        Some("SMS_OTP".into()),
        Some("totp".into()),
        Some("TOTP ".into()),
        Some("password".into()),
        Some("sso".into()),
        Some("enroll".into()),
        Some("unenroll".into()),
        Some("+14155552671".into()),
        Some("+1 (415) 555-2671".into()),
        Some("+1 416 555 0123".into()),
        Some("+999999999999999999".into()),
        Some("+".into()),
        Some("++14155552671".into()),
        Some("+1415555267１".into()),
        Some("+44 7700 900123".into()),
        Some("+86 138 0013 8000".into()),
        Some("+850 191 234 5678".into()),
        Some("tel:+14155552671".into()),
        Some("+1-800-FLOWERS".into()),
        Some("+14155552671;ext=12".into()),
        Some("123456".into()),
        Some("000000".into()),
        Some("12345".into()),
        Some("1234567".into()),
        Some("１２３４５６".into()),
        Some("-12345".into()),
        Some("12 34 56".into()),
        Some("abcdef".into()),
        Some("en".into()),
        Some("pt-BR".into()),
        Some("zz".into()),
        Some("../../etc/passwd".into()),
        Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()),
        Some("jbswy3dpehpk3pxp".into()),
        Some("====".into()),
        Some("0189".into()),
        Some("A".repeat(200)),
        Some("abcd-efgh-ijkl".into()),
        Some("SM123".into()),
        Some("x".repeat(129)),
        Some("x".repeat(10_000)),
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        Some("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP".into()),
        Some("webauthn".into()),
        Some("example.com".into()),
        Some("localhost".into()),
        Some("https://example.com".into()),
        Some("http://localhost:8080".into()),
        Some("platform".into()),
        Some("00000000-0000-0000-0000-000000000000".into()),
    ];
    v.push(Some("ß".repeat(3000)));
    v
}

fn hostile_text(rng: &mut StdRng, pool: &[Option<String>]) -> Option<String> {
    match rng.gen_range(0..200) {
        0 => Some("a".repeat(1 << 20)), // 1 MB
        1..=4 => Some(
            (0..rng.gen_range(1..64))
                .map(|_| char::from_u32(rng.gen_range(1..0x2FFFF)).unwrap_or('?'))
                .collect(),
        ),
        _ => pool.choose(rng).unwrap().clone(),
    }
}

fn hostile_array(rng: &mut StdRng, pool: &[Option<String>]) -> Option<Vec<Option<String>>> {
    let pick = |v: &[&str]| Some(v.iter().map(|s| Some(s.to_string())).collect());
    match rng.gen_range(0..10) {
        0 => None,
        1 => Some(vec![]),
        2 => Some(vec![None]),
        3 => pick(&["US", "CA"]),
        4 => pick(&["us", "ca", "US"]),
        5 => pick(&["XX", "KP", "CU"]),
        6 => pick(&["sms_otp", "totp", "webauthn"]),
        7 => pick(&["SMS_OTP"]),
        8 => Some((0..1000).map(|i| Some(format!("C{i}"))).collect()),
        _ => Some(
            (0..rng.gen_range(1..5))
                .map(|_| hostile_text(rng, pool))
                .collect(),
        ),
    }
}

/// One argument, as a boxed parameter and the SQL that casts it.
fn argument(
    rng: &mut StdRng,
    type_name: &str,
    pool: &[Option<String>],
) -> (Box<dyn ToSql + Sync>, &'static str) {
    match type_name {
        "text" => (Box::new(hostile_text(rng, pool)), "text"),
        "text[]" => (Box::new(hostile_array(rng, pool)), "text[]"),
        "integer" => {
            let v: Option<i32> = [
                None,
                Some(0),
                Some(1),
                Some(-1),
                Some(5),
                Some(60),
                Some(1000),
                Some(1001),
                Some(1440),
                Some(1441),
                Some(i32::MIN),
                Some(i32::MAX),
            ]
            .choose(rng)
            .copied()
            .unwrap();
            (Box::new(v), "integer")
        }
        "bigint" => {
            let v: Option<i64> = [
                None,
                Some(0),
                Some(1),
                Some(-1),
                Some(42),
                Some(i64::MIN),
                Some(i64::MAX),
            ]
            .choose(rng)
            .copied()
            .unwrap();
            (Box::new(v), "bigint")
        }
        "boolean" => (
            Box::new(
                [None, Some(true), Some(false)]
                    .choose(rng)
                    .copied()
                    .unwrap(),
            ),
            "boolean",
        ),
        // Sent as text and cast on the server: only values that cast, so the call is reached.
        "interval" => {
            let v = [
                "0",
                "1 second",
                "30 seconds",
                "-1 day",
                "1000 years",
                "1 microsecond",
            ]
            .choose(rng)
            .map(|s| Some(s.to_string()))
            .unwrap();
            (
                Box::new(if rng.gen_bool(0.1) { None } else { v }),
                "text::interval",
            )
        }
        "timestamp with time zone" => {
            let v = [
                "now",
                "infinity",
                "-infinity",
                "1970-01-01",
                "4713-01-01 BC",
                "2262-04-11 23:47:16+00",
            ]
            .choose(rng)
            .map(|s| Some(s.to_string()))
            .unwrap();
            (
                Box::new(if rng.gen_bool(0.1) { None } else { v }),
                "text::timestamptz",
            )
        }
        // The session guard's arguments: table names that exist (others fail in the cast, before
        // the call), column names, and factors columns of every shape.
        "regclass" => {
            let v = [
                "public.canary",
                "pg_catalog.pg_class",
                "mfa.members",
                "mfa.events",
            ]
            .choose(rng)
            .map(|s| Some(s.to_string()))
            .unwrap();
            (Box::new(v), "text::regclass")
        }
        "name" => (Box::new(hostile_text(rng, pool)), "text::name"),
        "jsonb" => {
            let v = [
                "null",
                "[]",
                "{}",
                "\"aal2\"",
                "[null, 1, \"x\", []]",
                "[{\"type\": \"totp\", \"last_authenticated_at\": \"garbage\"}]",
                "[{\"type\": \"totp\", \"last_authenticated_at\": \"99999-01-01T00:00:00Z\"}]",
                "[{\"type\": \"otp\", \"delivery_method\": \"sms\", \"last_authenticated_at\": \"2026-01-01T00:00:00+00:00\"}]",
                "[{\"type\": \"recovery_codes\", \"last_authenticated_at\": 12}]",
                "[{\"type\": \"webauthn\", \"webauthn_factor\": {\"backup_eligible\": \"no\"}}]",
                // Passkey responses: wrong types, truncated or duplicated CBOR, client data of
                // every shape (each a 22023 or a returned 401).
                "{\"type\": \"public-key\", \"id\": 1, \"rawId\": [], \"response\": \"x\"}",
                "{\"type\": \"public-key\", \"id\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"rawId\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"response\": {\"clientDataJSON\": \"e30\", \"attestationObject\": \"oA\"}}",
                "{\"type\": \"public-key\", \"id\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"rawId\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"response\": {\"clientDataJSON\": \"eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiQUFBQSIsIm9yaWdpbiI6Imh0dHBzOi8vZXhhbXBsZS5jb20ifQ\", \"attestationObject\": \"omNmbXRkbm9uZWNmbXRkbm9uZQ\"}}",
                "{\"type\": \"public-key\", \"id\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"rawId\": \"AAAAAAAAAAAAAAAAAAAAAA\", \"response\": {\"clientDataJSON\": \"eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiQUFBQSIsIm9yaWdpbiI6Imh0dHBzOi8vZXhhbXBsZS5jb20ifQ\", \"authenticatorData\": \"o2Nm\", \"signature\": \"\", \"userHandle\": 7}}",
                // The reports' filters.
                "{\"locked\": true, \"has_totp\": false}",
                "{\"no_factor\": true, \"last_mfa_before\": \"2026-01-01T00:00:00Z\"}",
                "{\"last_mfa_after\": \"9999-12-31T23:59:59.999999-23:59\"}",
                "{\"member_id\": \"m1\", \"event_type\": [\"totp.authenticate\", \"x\"]}",
                "{\"after\": \"0001-01-01\", \"before\": \"2026-02-29T00:00:00Z\"}",
                "{\"locked\": \"true\"}",
                "{\"event_type\": [[[[[[]]]]]]}",
                "{\"\": null}",
            ]
            .choose(rng)
            .map(|s| Some(s.to_string()))
            .unwrap();
            (
                Box::new(if rng.gen_bool(0.1) { None } else { v }),
                "text::jsonb",
            )
        }
        other => panic!("no hostile values for type {other}"),
    }
}

struct Function {
    name: String,
    arg_types: Vec<String>,
    arg_names: Vec<String>,
    defaults: usize,
    returns_set: bool,
}

fn public_functions(c: &mut postgres::Client) -> Vec<Function> {
    c.query(
        "SELECT p.proname::text, coalesce(array_agg(format_type(t.oid, NULL) ORDER BY a.ord)
                                          FILTER (WHERE t.oid IS NOT NULL), '{}'),
                p.pronargdefaults::int, p.proretset, coalesce(p.proargnames::text[], '{}')
           FROM pg_proc p
           LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(type_oid, ord) ON true
           LEFT JOIN pg_type t ON t.oid = a.type_oid
          WHERE p.pronamespace = 'mfa'::regnamespace AND p.prorettype <> 'trigger'::regtype
            AND p.proname NOT LIKE '\\_%'
          GROUP BY p.oid, p.proname, p.pronargdefaults, p.proretset
          ORDER BY p.proname",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| Function {
        name: r.get(0),
        arg_types: r.get(1),
        defaults: r.get::<_, i32>(2) as usize,
        returns_set: r.get(3),
        arg_names: r.get(4),
    })
    .collect()
}

#[test]
fn hostile_values_never_crash_panic_or_corrupt() {
    let calls: usize = std::env::var("MFA_HOSTILE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("MFA_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("hostile input: {calls} calls, MFA_HOSTILE_SEED={seed}");
    // Its own database: the calls change the project-wide allowlist.
    let url = fresh_database("mfa_hostile");
    let mut c = connect_to(&url);
    c.batch_execute(
        "CREATE TABLE public.canary (id int); INSERT INTO public.canary VALUES (1);
         SET mfa.sms_sends_per_number_per_hour = 1000;
         SET mfa.sms_sends_per_member_per_hour = 1000;",
    )
    .unwrap();
    json(&mut c, "SELECT mfa.organization_upsert($1)", &[&KNOWN_ORG]);
    c.batch_execute(
        "SELECT mfa.webauthn_allowed_origins_set(ARRAY['https://example.com', 'http://localhost:8080'])",
    )
    .unwrap();
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, $2, '+14155552671')",
        &[&KNOWN_ORG, &KNOWN_MEMBER],
    );
    json(
        &mut c,
        "SELECT mfa.totp_create($1, $2)",
        &[&KNOWN_ORG, &KNOWN_MEMBER],
    );
    // An organization the calls never name, checked at the end.
    let control = organization_with_member(&mut c, "control", "ann");
    let control_secret = json(&mut c, "SELECT mfa.totp_create($1, 'ann')", &[&control])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let objects_before: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'mfa'::regnamespace",
            &[],
        )
        .unwrap()
        .get(0);

    let functions = public_functions(&mut c);
    assert!(functions.len() >= 25, "found {} functions", functions.len());
    // A quarter of the calls come from the application's and the worker's roles.
    let mut app = connect_to(&url);
    app.batch_execute("SET ROLE mfa_app").unwrap();
    let mut worker = connect_to(&url);
    worker.batch_execute("SET ROLE mfa_sms_worker").unwrap();

    let pool = hostile_texts();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for call in 0..calls {
        if call % 200 == 0 {
            // The calls delete the known member now and then: bring it back.
            c.batch_execute(&format!(
                "SELECT mfa.organization_upsert('{KNOWN_ORG}');
                 SELECT mfa.member_upsert('{KNOWN_ORG}', '{KNOWN_MEMBER}')"
            ))
            .unwrap();
        }
        let f = functions.choose(&mut rng).unwrap();
        let arity = f.arg_types.len() - rng.gen_range(0..=f.defaults);
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut casts = Vec::new();
        for (i, t) in f.arg_types.iter().take(arity).enumerate() {
            // Mostly the ids that exist, so that calls reach past the lookups.
            let known = match f.arg_names.get(i).map(String::as_str) {
                Some("organization_id") => Some(KNOWN_ORG),
                Some("member_id") => Some(KNOWN_MEMBER),
                _ => None,
            };
            let (value, cast) = match known {
                Some(id) if rng.gen_bool(0.6) => {
                    (Box::new(id.to_string()) as Box<dyn ToSql + Sync>, "text")
                }
                _ => argument(&mut rng, t, &pool),
            };
            params.push(value);
            casts.push(format!("${}::{cast}", i + 1));
        }
        let invocation = format!("mfa.{}({})", f.name, casts.join(", "));
        let sql = if f.returns_set {
            format!("SELECT count(*) FROM {invocation}")
        } else {
            format!("SELECT {invocation} IS NULL")
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let client = match call % 8 {
            6 => &mut app,
            7 => &mut worker,
            _ => &mut c,
        };
        let outcome = match client.query(&sql, &refs) {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                let (state, message) = sql_error(&e);
                assert!(
                    !client.is_closed(),
                    "call {call} closed the connection: {invocation}: {e} (seed {seed})"
                );
                assert!(
                    DOCUMENTED.contains(&state.as_str()),
                    "call {call}: {invocation} raised an undocumented error {state}: {message} (seed {seed})"
                );
                let permission = state == "42501" && message.starts_with("permission denied");
                let error_type = message.split(':').next().unwrap_or_default();
                assert!(
                    permission
                        || (!error_type.is_empty()
                            && error_type.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')),
                    "call {call}: {invocation}: an error without its error_type: {message} (seed {seed})"
                );
                assert!(!message.contains("panicked"), "{message}");
                if permission {
                    "permission denied".to_string()
                } else {
                    error_type.to_string()
                }
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!("outcomes: {outcomes:?}");
    assert!(
        outcomes.get("ok").copied().unwrap_or(0) > calls / 50,
        "{outcomes:?}"
    );

    // Nothing was injected, nothing is corrupt, and the untouched organization still logs in.
    let canary: i64 = c
        .query_one("SELECT count(*) FROM public.canary", &[])
        .unwrap()
        .get(0);
    assert_eq!(canary, 1);
    let objects_after: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'mfa'::regnamespace",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        objects_before, objects_after,
        "objects appeared or vanished in schema mfa"
    );
    c.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS amcheck;
         SELECT bt_index_check(c.oid, true) FROM pg_class c JOIN pg_am a ON a.oid = c.relam
          WHERE c.relnamespace = 'mfa'::regnamespace AND c.relkind = 'i' AND a.amname = 'btree';",
    )
    .unwrap();
    let broken: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM mfa.members WHERE (mfa_phone_number IS NULL) <> (phone_id IS NULL))
                  + (SELECT count(*) FROM mfa.member_lockouts WHERE failed_attempts < 0 OR lock_count < 0)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(broken, 0);
    let (_, token) = start_login(&mut c, &control, "ann");
    let proven = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&control, &totp_now(&control_secret), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    let session = json(
        &mut c,
        "SELECT mfa.check_session_policy($1, 'ann', $2)",
        &[&control, &token],
    );
    assert_eq!(session["status_code"], 200, "{session}");
}

/// A value of every kind for each argument of the reports (`members_search`, `events_search`):
/// each call answers or raises 22023 (P0002 for an organization that does not exist), as an
/// administrator; the application's role is refused (42501) whatever it sends.
#[test]
fn the_reports_arguments_are_checked() {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let url = fresh_database("mfa_hostile_reports");
    let mut c = connect_to(&url);
    json(&mut c, "SELECT mfa.organization_upsert($1)", &[&KNOWN_ORG]);
    for i in 0..30 {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&KNOWN_ORG, &format!("m{i:02}")],
        );
    }
    let mut cursors: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("=".into()),
        Some("bTE6YQ==".into()),
        Some("bTE+YQ/".into()),
        Some("b".repeat(1 << 20)),
        Some(b64(b"m1:")),
        Some(b64(b"m1:\x00")),
        Some(b64(&[b'm', b'1', b':', 0xff, 0xfe])),
        Some(b64(format!("m1:{}", "x".repeat(129)).as_bytes())),
        Some(b64("m1:ß🔐\u{202E}".as_bytes())),
        Some(b64(b"e1:-1")),
        Some(b64(b"e1:0")),
        Some(b64(b"e1:1e5")),
        Some(b64(b"e1:99999999999999999999")),
        Some(b64(b"e1:9223372036854775807")),
        Some(b64(b"e1: 7")),
        Some(b64(b"x1:7")),
        Some("'; DROP TABLE public.canary; --".into()),
    ];
    // Real cursors of both searches (each given to the other too).
    for f in ["members_search", "events_search"] {
        let page = json(
            &mut c,
            &format!("SELECT mfa.{f}($1, page_size => 3)"),
            &[&KNOWN_ORG],
        );
        cursors.push(
            page["results_metadata"]["next_cursor"]
                .as_str()
                .map(str::to_string),
        );
    }
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let many_types: Vec<String> = (0..100_000).map(|i| format!("\"t{i}\"")).collect();
    let filters: Vec<Option<String>> = vec![
        None,
        Some("null".into()),
        Some("{}".into()),
        Some("[]".into()),
        Some("\"locked\"".into()),
        Some("1e308".into()),
        Some("true".into()),
        Some("{\"locked\": true, \"locked\": false}".into()),
        Some("{\"locked\": null}".into()),
        Some("{\"locked\": 1}".into()),
        Some("{\"Locked\": true}".into()),
        Some("{\"lockéd\": true}".into()),
        Some("{\"has_passkey\": true}".into()),
        Some(format!("{{\"locked\": {deep}}}")),
        Some(format!("{{\"event_type\": [{}]}}", many_types.join(","))),
        Some(format!("{{\"event_type\": \"{}\"}}", "x".repeat(1 << 20))),
        Some("{\"event_type\": \"totp.authenticate\"}".into()),
        Some("{\"event_type\": [\"totp.authenticate\", null]}".into()),
        Some("{\"event_type\": \"') OR 1=1 --\"}".into()),
        Some("{\"member_id\": \"m01\"}".into()),
        Some("{\"member_id\": \"\"}".into()),
        Some("{\"member_id\": \"\\u0007\"}".into()),
        Some(format!("{{\"member_id\": \"{}\"}}", "x".repeat(129))),
        Some("{\"member_id\": [\"m01\"]}".into()),
        Some("{\"after\": \"0001-01-01T00:00:00Z\", \"before\": \"9999-12-31T23:59:59Z\"}".into()),
        Some("{\"after\": \"2026-01-01T00:00:00+24:00\"}".into()),
        Some("{\"before\": \"2026-01-01T00:00:00.1234567891Z\"}".into()),
        Some("{\"before\": 1767225600}".into()),
        Some("{\"last_mfa_before\": \"9999-12-31T23:59:59.999999-23:59\"}".into()),
        Some("{\"last_mfa_after\": \"0001-01-01T00:00:00+23:59\"}".into()),
        Some("{\"last_mfa_after\": \"infinity\"}".into()),
        Some("{\"no_factor\": true, \"has_totp\": true, \"has_phone\": true, \"breakglass\": true, \"mfa_enrolled\": true, \"locked\": true}".into()),
    ];
    let page_sizes = [
        None,
        Some(0),
        Some(-1),
        Some(1),
        Some(1000),
        Some(1001),
        Some(i32::MIN),
        Some(i32::MAX),
    ];
    let orgs: Vec<Option<String>> = hostile_texts().into_iter().take(20).collect();
    let mut app = connect_to(&url);
    app.batch_execute("SET ROLE mfa_app").unwrap();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut record =
        |result: Result<Vec<postgres::Row>, postgres::Error>, call: &str, allowed: &[&str]| {
            let outcome = match result {
                Ok(_) => "ok".to_string(),
                Err(e) => {
                    let (state, message) = sql_error(&e);
                    assert!(
                        allowed.contains(&state.as_str()),
                        "{call}: {state} {message}"
                    );
                    assert!(!message.contains("panicked"), "{message}");
                    format!("{state} {}", message.split(':').next().unwrap_or_default())
                }
            };
            *outcomes.entry(outcome).or_default() += 1;
        };
    for f in ["members_search", "events_search"] {
        let sql = format!("SELECT mfa.{f}($1, $2::text::jsonb, $3, $4)");
        for filter in &filters {
            for cursor in cursors.iter().step_by(3) {
                let result = c.query(&sql, &[&KNOWN_ORG, filter, cursor, &Some(5)]);
                record(result, &format!("{f} filter {:.80?}", filter), &["22023"]);
            }
        }
        for cursor in &cursors {
            let result = c.query(&sql, &[&KNOWN_ORG, &None::<String>, cursor, &Some(5)]);
            record(result, &format!("{f} cursor {:.80?}", cursor), &["22023"]);
        }
        for size in page_sizes {
            let result = c.query(&sql, &[&KNOWN_ORG, &Some("{}"), &None::<String>, &size]);
            record(result, &format!("{f} page_size {size:?}"), &["22023"]);
        }
        for org in &orgs {
            let result = c.query(&sql, &[org, &Some("{}"), &None::<String>, &Some(5)]);
            record(
                result,
                &format!("{f} organization {:.80?}", org),
                &["22023", "P0002"],
            );
        }
        for filter in filters.iter().take(8) {
            let result = app.query(&sql, &[&KNOWN_ORG, filter, &cursors[0], &Some(5)]);
            let e = result.expect_err("the application's role is refused");
            assert_eq!(sql_error(&e).0, "42501");
        }
        assert!(!c.is_closed());
    }
    println!("report arguments: {outcomes:?}");
    assert!(
        outcomes.get("ok").copied().unwrap_or(0) > 20,
        "{outcomes:?}"
    );
    // Still answering, and right.
    let page = json(
        &mut c,
        "SELECT mfa.members_search($1, '{\"no_factor\": true}', NULL, 1000)",
        &[&KNOWN_ORG],
    );
    assert_eq!(page["results_metadata"]["total"], 30);
}
