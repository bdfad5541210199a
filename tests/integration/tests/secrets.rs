//! Secrets stay secret: after a full flow on a server logging at `debug5`, no line of the server
//! log, no audit event, no administrator's report (`members_search`, `events_search`), no error or
//! notice the client received, and no line of `pg_dump`'s output holds a TOTP secret, a code, a
//! recovery code or a token.

mod common;
use common::*;
use postgres::{Client, NoTls};
use std::sync::{Arc, Mutex};

struct Flow {
    client: Client,
    org: String,
    /// Every secret the flow saw, with what it is.
    secrets: Vec<(String, &'static str)>,
    /// Every error the client received, raised or returned.
    errors: Vec<String>,
}

impl Flow {
    fn call(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> serde_json::Value {
        match self.client.query_one(sql, params) {
            Ok(row) => {
                let answer: serde_json::Value = row.get(0);
                // A returned failure is an error message too.
                if answer["status_code"] != 200 {
                    self.errors.push(answer.to_string());
                }
                answer
            }
            Err(e) => {
                let (state, message) = sql_error(&e);
                let detail = e
                    .as_db_error()
                    .map(|d| format!("{:?} {:?}", d.detail(), d.hint()))
                    .unwrap_or_default();
                self.errors.push(format!("{state} {message} {detail}"));
                serde_json::Value::Null
            }
        }
    }

    fn keep(&mut self, secret: &str, what: &'static str) {
        assert!(!secret.is_empty());
        self.secrets.push((secret.to_string(), what));
    }
}

fn token_of(v: &serde_json::Value) -> String {
    v["intermediate_session_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Where `secret` appears in `text` as a whole word (codes are digits: a longer run of digits that
/// merely contains one is not a leak).
fn leaks(text: &str, secret: &str) -> bool {
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        !before.is_some_and(|ch| ch.is_ascii_alphanumeric())
            && !after.is_some_and(|ch| ch.is_ascii_alphanumeric())
    })
}

#[test]
fn no_secret_in_logs_events_errors_notices_or_dumps() {
    let cluster = Cluster::start_with_key_file(
        "secrets",
        28819,
        "log_min_messages = debug5\nlog_error_verbosity = verbose\nlog_min_error_statement = debug5",
        &format!("{}\n", "ab".repeat(32)),
    );
    let url = cluster.create_database("mfa_secrets");
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    let client = url
        .parse::<postgres::Config>()
        .unwrap()
        .notice_callback(move |n| {
            seen.lock()
                .unwrap()
                .push(format!("{} {:?} {:?}", n.message(), n.detail(), n.hint()))
        })
        .connect(NoTls)
        .unwrap();
    let mut f = Flow {
        client,
        org: String::new(),
        secrets: vec![],
        errors: vec![],
    };
    f.client
        .batch_execute("SET client_min_messages = debug5; SET mfa.sms_min_interval_seconds = 0")
        .unwrap();
    f.org = new_organization(&mut f.client, "secrets");
    let org = f.org.clone();
    f.call(
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[&org],
    );
    f.call(
        "SELECT mfa.member_upsert($1, 'ann', '+14155550142')",
        &[&org],
    );

    // Enrollment in a login: TOTP first, recovery codes with it.
    let login = f.call("SELECT mfa.primary_authenticate($1, 'ann')", &[&org]);
    let token = token_of(&login);
    f.keep(&token, "intermediate session token");
    let created = f.call("SELECT mfa.totp_create($1, 'ann', 10, $2)", &[&org, &token]);
    let secret = created["secret"].as_str().unwrap().to_string();
    f.keep(&secret, "TOTP secret (base32)");
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    f.keep(&data_encoding::HEXLOWER.encode(&raw), "TOTP secret (hex)");
    f.keep(
        &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw),
        "TOTP secret (base64)",
    );
    let codes: Vec<String> = created["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for code in &codes {
        f.keep(code, "recovery code");
        f.keep(&code.replace('-', ""), "recovery code (bare)");
    }
    f.call(
        "SELECT mfa.totp_authenticate($1, 'ann', '000000', $2)",
        &[&org, &token],
    );
    let code = totp_now(&secret);
    f.keep(&code, "TOTP code");
    let ok = f.call(
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &code, &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    f.call(
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &code, &token],
    );

    // SMS, as a second factor of the same login, then on its own.
    f.call(
        "SELECT mfa.otp_sms_send($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let sms = sms_code(&mut f.client, &org);
    f.keep(&sms, "SMS code");
    f.call(
        "SELECT mfa.otp_sms_authenticate($1, 'ann', '999999', $2)",
        &[&org, &token],
    );
    let ok = f.call(
        "SELECT mfa.otp_sms_authenticate($1, 'ann', $2, $3)",
        &[&org, &sms, &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    let ok = f.call(
        "SELECT mfa.check_session_policy($1, 'ann', $2)",
        &[&org, &token],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
    f.call(
        "SELECT mfa.check_session_policy($1, 'ann', $2)",
        &[&org, &token],
    );

    // A recovery login, a rotation, a pending SMS message left in the outbox, a denied session.
    let second = token_of(&f.call("SELECT mfa.primary_authenticate($1, 'ann')", &[&org]));
    f.keep(&second, "intermediate session token");
    let recovered = f.call(
        "SELECT mfa.recovery_codes_recover($1, 'ann', $2, $3)",
        &[&org, &codes[0], &second],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    f.call(
        "SELECT mfa.recovery_codes_recover($1, 'ann', $2, $3)",
        &[&org, &codes[0], &second],
    );
    // A passkey registered in that login, then a sign-in with it: the challenges and the
    // signatures the browser sent.
    f.call(
        "SELECT to_jsonb(mfa.webauthn_allowed_origins_set(ARRAY[$1]))",
        &[&common::passkey::ORIGIN],
    );
    let mut passkey = common::passkey::Authenticator::es256();
    let start = f.call(
        "SELECT mfa.webauthn_register_start($1, 'ann', 'passkeys.test', $2)",
        &[&org, &second],
    );
    let options = &start["public_key_credential_creation_options"];
    f.keep(
        options["challenge"].as_str().unwrap(),
        "passkey registration challenge",
    );
    let registration = passkey.register(options);
    let registered = f.call(
        "SELECT mfa.webauthn_register($1, 'ann', $2, $3)",
        &[&org, &registration, &second],
    );
    assert_eq!(registered["status_code"], 200, "{registered}");
    let passkey_login = token_of(&f.call("SELECT mfa.primary_authenticate($1, 'ann')", &[&org]));
    f.keep(&passkey_login, "intermediate session token");
    let start = f.call(
        "SELECT mfa.webauthn_authenticate_start($1, 'ann', 'passkeys.test', $2)",
        &[&org, &passkey_login],
    );
    let options = &start["public_key_credential_request_options"];
    f.keep(options["challenge"].as_str().unwrap(), "passkey challenge");
    let answer = passkey.assert(options);
    f.keep(
        answer["response"]["signature"].as_str().unwrap(),
        "passkey signature",
    );
    let signed_in = f.call(
        "SELECT mfa.webauthn_authenticate($1, 'ann', $2, $3)",
        &[&org, &answer, &passkey_login],
    );
    assert_eq!(signed_in["status_code"], 200, "{signed_in}");
    // The same answer again: refused, and the refusal names nothing of it.
    f.call(
        "SELECT mfa.webauthn_authenticate($1, 'ann', $2, $3)",
        &[&org, &answer, &passkey_login],
    );

    // A remembered device: its tokens (the first, rotated away and presented again as a copied
    // cookie would be, and the next) and its fingerprint.
    let fingerprint = "fp-7f3c9a1e5b2d4c68";
    f.keep(fingerprint, "device fingerprint");
    let device = f.call(
        "SELECT mfa.remembered_device_create($1, 'ann', $2, $3, 'Laptop')",
        &[&org, &second, &fingerprint],
    );
    let device_token = device["device_token"].as_str().unwrap().to_string();
    f.keep(&device_token, "device token");
    let remembered = f.call(
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2, device_fingerprint => $3)",
        &[&org, &device_token, &fingerprint],
    );
    let rotated_device_token = remembered["device_token"].as_str().unwrap().to_string();
    f.keep(&rotated_device_token, "device token (rotated)");
    f.keep(&token_of(&remembered), "intermediate session token");
    f.call(
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2, device_fingerprint => $3)",
        &[&org, &device_token, &fingerprint],
    );
    f.call(
        "SELECT mfa.remembered_device_create($1, 'ann', $2, $3)",
        &[&org, &token_of(&remembered), &fingerprint],
    );
    let rotated = f.call(
        "SELECT mfa.recovery_codes_rotate($1, 'ann', $2)",
        &[&org, &second],
    );
    for code in rotated["recovery_codes"].as_array().unwrap() {
        let code = code.as_str().unwrap().to_string();
        f.keep(&code, "recovery code");
    }
    let third = token_of(&f.call("SELECT mfa.primary_authenticate($1, 'ann')", &[&org]));
    f.keep(&third, "intermediate session token");
    f.call(
        "SELECT mfa.check_session_policy($1, 'ann', $2)",
        &[&org, &third],
    );
    f.client
        .batch_execute("SET mfa.sms_min_interval_seconds = 0")
        .unwrap();
    f.call("SELECT mfa.otp_sms_send($1, 'ann')", &[&org]);
    let pending = sms_code(&mut f.client, &org);
    f.keep(&pending, "SMS code (pending)");
    // Claimed again later by a worker: the message stays pending in the table.
    assert!(f.errors.len() >= 7, "the flow's failures: {:?}", f.errors);

    // The administrators' reports of the organization: every member and every event, a few at a
    // time, as an administrator pages through them.
    let mut reports = String::new();
    for report in ["members_search", "events_search"] {
        let mut cursor: Option<String> = None;
        loop {
            let page = f.call(
                &format!("SELECT mfa.{report}($1, '{{}}', $2, 3)"),
                &[&org, &cursor],
            );
            assert_eq!(page["status_code"], 200, "{page}");
            reports.push_str(&page.to_string());
            match page["results_metadata"]["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        for filter in [
            "{\"member_id\": \"ann\"}",
            "{\"locked\": false, \"has_totp\": true}",
        ] {
            if let Ok(row) = f.client.query_one(
                &format!("SELECT mfa.{report}($1, $2::text::jsonb, NULL, 1000)"),
                &[&org, &filter],
            ) {
                reports.push_str(&row.get::<_, serde_json::Value>(0).to_string());
            }
        }
    }
    assert!(reports.contains("totp.authenticate") && reports.contains("\"ann\""));

    // Where the secrets must not be.
    let events: String = f
        .client
        .query_one(
            "SELECT string_agg(details::text || ' ' || event_type, E'\\n') FROM mfa.events",
            &[],
        )
        .unwrap()
        .get(0);
    let dump = std::process::Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "mfa_secrets",
        ])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(
        dump.contains("COPY mfa.totp_registrations"),
        "the dump holds the extension's rows"
    );
    drop(f.client);
    let log = cluster.log();
    assert!(log.contains("DEBUG"), "the server logged at debug levels");
    let places = [
        ("server log", log),
        ("audit events", events),
        ("reports", reports),
        ("errors", f.errors.join("\n")),
        ("notices", notices.lock().unwrap().join("\n")),
        ("pg_dump", dump),
    ];
    for (place, text) in &places {
        for (secret, what) in &f.secrets {
            assert!(!leaks(text, secret), "the {place} holds a {what}");
        }
    }
    println!(
        "secrets: {} secrets checked against {} bytes of debug5 server log, {} audit event bytes, {} report bytes, {} errors, {} notices and {} bytes of pg_dump",
        f.secrets.len(),
        places[0].1.len(),
        places[1].1.len(),
        places[2].1.len(),
        f.errors.len(),
        places[4].1.lines().count(),
        places[5].1.len()
    );
}
