//! Shared helpers: connections to the test database named by MFA_TEST_DATABASE_URL.
#![allow(dead_code)]

pub mod passkey;

use postgres::{Client, NoTls};
use serde_json::Value;

/// The SMS limits a superuser's test session runs with (`connect`).
const TEST_SMS_LIMITS: [(&str, &str); 3] = [
    ("mfa.sms_min_interval_seconds", "0"),
    ("mfa.sms_sends_per_prefix_per_hour", "100000"),
    ("mfa.sms_sends_per_member_per_hour", "1000"),
];

pub fn connect() -> Client {
    let url = std::env::var("MFA_TEST_DATABASE_URL").expect(
        "MFA_TEST_DATABASE_URL must name a database with the mfa extension (make test sets it)",
    );
    let mut client = Client::connect(&url, NoTls).expect("connect to the test database");
    let sets: String = TEST_SMS_LIMITS
        .iter()
        .map(|(name, value)| format!("SET {name} = {value};"))
        .collect();
    client.batch_execute(&sets).unwrap();
    if on_cluster(&mut client) {
        // A session's SET does not reach a call Citus delegates to the organization's node (it
        // runs in another backend there); a setting of this role in this database does: Citus
        // propagates it to every node. New sessions get it (this one has it from the SETs).
        let missing: bool = client
            .query_one(
                "SELECT NOT coalesce((SELECT setconfig @> $1::text[] FROM pg_db_role_setting
                                       WHERE setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                                         AND setdatabase = (SELECT oid FROM pg_database
                                                             WHERE datname = current_database())), false)",
                &[&TEST_SMS_LIMITS
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()],
            )
            .unwrap()
            .get(0);
        if missing {
            let database: String = client
                .query_one("SELECT quote_ident(current_database())", &[])
                .unwrap()
                .get(0);
            let alters: String = TEST_SMS_LIMITS
                .iter()
                .map(|(name, value)| {
                    format!("ALTER ROLE CURRENT_USER IN DATABASE {database} SET {name} = {value};")
                })
                .collect();
            client.batch_execute(&alters).unwrap();
            // Reconnect: Citus's connections to the workers, opened before, keep the old values.
            return connect();
        }
    }
    client
}

/// Whether `client`'s database is distributed by `mfa.distribute()` on a Citus cluster (the suite
/// then runs against its coordinator: docs/citus.md).
pub fn on_cluster(client: &mut Client) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
                AND to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get::<_, bool>(0)
        && client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_dist_partition
                                 WHERE logicalrelid = 'mfa.organizations'::regclass)",
                &[],
            )
            .unwrap()
            .get(0)
}

/// On a cluster, the connection string (`url`'s user and database) of the node that holds
/// `org`'s rows, where its calls are delegated and its attempts counted; `url` on one node.
pub fn node_of(client: &mut Client, url: &str, org: &str) -> String {
    if !on_cluster(client) {
        return url.to_string();
    }
    let row = client
        .query_one(
            "SELECT n.nodename, n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
              WHERE p.shardid = get_shard_id_for_distribution_column('mfa.organizations', $1::text)
                AND n.noderole = 'primary' LIMIT 1",
            &[&org],
        )
        .unwrap();
    with_node(url, row.get(0), row.get(1))
}

/// Whether `org`'s rows are on another node of the cluster than the one `client` is connected to
/// (false on one node): calls made there inside a DO block or an expression are not delegated.
pub fn organization_elsewhere(client: &mut Client, org: &str) -> bool {
    on_cluster(client)
        && client
            .query_one(
                "SELECT p.groupid <> (SELECT groupid FROM pg_dist_local_group)
                   FROM pg_dist_placement p
                  WHERE p.shardid = get_shard_id_for_distribution_column('mfa.organizations', $1::text)
                  LIMIT 1",
                &[&org],
            )
            .unwrap()
            .get(0)
}

/// The connection strings (`url`'s user and database) of every node of the cluster, coordinator
/// first; `url` alone on one node. A notification is raised on the node that runs the call.
pub fn node_urls(client: &mut Client, url: &str) -> Vec<String> {
    let mut urls = vec![url.to_string()];
    if on_cluster(client) {
        for row in client
            .query(
                "SELECT nodename, nodeport FROM pg_dist_node
                  WHERE isactive AND noderole = 'primary' AND groupid <> (SELECT groupid FROM pg_dist_local_group)
                  ORDER BY groupid",
                &[],
            )
            .unwrap()
        {
            urls.push(with_node(url, row.get(0), row.get(1)));
        }
    }
    urls
}

/// The backends that run `client`'s calls: its own and, on a cluster, those of other nodes that
/// serve it (a delegated call runs in one of them).
pub fn serving_pids(client: &mut Client) -> Vec<i32> {
    if on_cluster(client) {
        client
            .query(
                "SELECT pid FROM citus_stat_activity WHERE global_pid = citus_backend_gpid()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        vec![client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0)]
    }
}

/// Asserts that `e` is the refusal of an attempt made on a node that does not hold its
/// organization: on a cluster, an attempt inside a DO block or an expression is not delegated,
/// and counting it on the coordinator would give a caller a failure allowance per node
/// (docs/citus.md, "One ledger per member").
pub fn assert_not_on_this_node(e: &postgres::Error) {
    let (state, message) = sql_error(e);
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.starts_with("organization_not_on_this_node"),
        "{message}"
    );
}

/// `url` with another host and port.
fn with_node(url: &str, host: String, port: i32) -> String {
    url.split_whitespace()
        .filter(|part| !part.starts_with("host=") && !part.starts_with("port="))
        .chain([
            format!("host={host}").as_str(),
            format!("port={port}").as_str(),
        ])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh organization id, so tests running at once never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A new organization with a unique id (tests running at once never share state).
pub fn new_organization(client: &mut Client, prefix: &str) -> String {
    let org = unique(prefix);
    json(client, "SELECT mfa.organization_upsert($1)", &[&org]);
    org
}

/// A new organization holding one member without factors.
pub fn organization_with_member(client: &mut Client, prefix: &str, member: &str) -> String {
    let org = new_organization(client, prefix);
    json(client, "SELECT mfa.member_upsert($1, $2)", &[&org, &member]);
    org
}

/// A deployment's roles, as a real application has them: a LOGIN role in `mfa_app` that owns a
/// schema of its own (where its sessions table goes), and a LOGIN role in `mfa_admin` that may
/// see that schema (to guard the table). Their names and the schema's, unique to this call.
pub fn application_roles(superuser: &mut Client, prefix: &str) -> (String, String, String) {
    let owner_role = unique(&format!("{prefix}_owner")).replace('-', "_");
    let admin_role = unique(&format!("{prefix}_admin")).replace('-', "_");
    let schema = format!("{owner_role}_app");
    superuser
        .batch_execute(&format!(
            "CREATE ROLE {owner_role} LOGIN; GRANT mfa_app TO {owner_role};
             CREATE ROLE {admin_role} LOGIN; GRANT mfa_admin TO {admin_role};
             CREATE SCHEMA {schema} AUTHORIZATION {owner_role};
             -- mfa_admin's role names the table it guards, so it can see the schema.
             GRANT USAGE ON SCHEMA {schema} TO {admin_role};"
        ))
        .unwrap();
    (owner_role, admin_role, schema)
}

/// How many messages the organization has in the SMS outbox.
pub fn queued_messages(client: &mut Client, organization_id: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM mfa.sms_outbox WHERE organization_id = $1",
            &[&organization_id],
        )
        .unwrap()
        .get(0)
}

/// A deployment's sessions table, `<schema>.sessions`, made by the application's role (its
/// owner) with `extra` after the gate's columns and guarded by its admin role: the application's
/// connection, and the schema.
pub fn guarded_sessions(superuser: &mut Client, prefix: &str, extra: &str) -> (Client, String) {
    let (app_role, admin_role, schema) = application_roles(superuser, prefix);
    let mut app = connect_to(&database_url_as(&app_role));
    app.batch_execute(&format!(
        "CREATE TABLE {schema}.sessions (
             organization_id text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
             member_id text NOT NULL, intermediate_session_token text,
             authentication_factors jsonb, {extra} PRIMARY KEY (organization_id, id))"
    ))
    .unwrap();
    connect_to(&database_url_as(&admin_role))
        .batch_execute(&format!(
            "SELECT mfa.session_table_guard('{schema}.sessions')"
        ))
        .unwrap();
    (app, schema)
}

/// A new LOGIN role in `mfa_app` (the application's role), with `settings` of its own
/// (`ALTER ROLE … SET`, which reaches the calls Citus delegates to another node, where a session's
/// `SET` does not). `mfa_app` itself cannot log in: on a cluster, a call made as it (`SET ROLE
/// mfa_app`) is refused, since Citus opens the worker's connection as the current role.
pub fn app_role(superuser: &mut Client, prefix: &str, settings: &[&str]) -> String {
    let role = unique(&format!("{prefix}_app")).replace('-', "_");
    superuser
        .batch_execute(&format!("CREATE ROLE {role} LOGIN IN ROLE mfa_app"))
        .unwrap();
    for setting in settings {
        superuser
            .batch_execute(&format!("ALTER ROLE {role} SET {setting}"))
            .unwrap();
    }
    role
}

/// Runs a query returning one jsonb value.
pub fn json(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Value {
    let row = client
        .query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {:?}", sql_error(&e)));
    row.get::<_, Value>(0)
}

/// Starts a login of `member` (after the application's own password check): the answer of
/// `primary_authenticate` and its intermediate session token.
pub fn start_login(client: &mut Client, org: &str, member: &str) -> (Value, String) {
    let login = json(
        client,
        "SELECT mfa.primary_authenticate($1, $2)",
        &[&org, &member],
    );
    let token = token_of(&login);
    (login, token)
}

/// The intermediate session token of an answer.
pub fn token_of(answer: &Value) -> String {
    answer["intermediate_session_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_string()
}

pub fn totp_now(secret_b32: &str) -> String {
    totp_at(secret_b32, 0)
}

/// The authenticator app's code for the step `offset` steps from now (mfa accepts one step
/// either side, each once).
pub fn totp_at(secret_b32: &str, offset: i64) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret)
        .generate((now + 30 * offset) as u64)
}

/// Runs `f` on `n` threads, each with its own connection, released together.
pub fn race<T: Send + 'static>(
    n: usize,
    f: impl Fn(&mut Client, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut client = connect();
                barrier.wait();
                f(&mut client, i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

/// The test database's connection string (key=value form), from MFA_TEST_DATABASE_URL.
pub fn database_url() -> String {
    std::env::var("MFA_TEST_DATABASE_URL").expect("MFA_TEST_DATABASE_URL (make test sets it)")
}

/// The test database's connection string for another login role.
pub fn database_url_as(role: &str) -> String {
    database_url()
        .split_whitespace()
        .map(|part| {
            if part.starts_with("user=") {
                format!("user={role}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `url` with another database name.
pub fn with_database(url: &str, database: &str) -> String {
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("dbname=") {
                format!("dbname={database}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new database with the extension, for a test that changes project-wide state (the allowlist)
/// or must see only its own rows. Returns its connection string.
pub fn fresh_database(prefix: &str) -> String {
    let name = unique(prefix).replace('-', "_");
    let mut admin = Client::connect(&database_url(), NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = with_database(&database_url(), &name);
    let mut c = Client::connect(&url, NoTls).expect("connect to the new database");
    c.batch_execute("SET client_min_messages = error; CREATE EXTENSION mfa")
        .unwrap();
    url
}

/// A connection to `url` with the test settings of `connect` (superuser only, like the
/// settings: the application's role keeps the configured limits).
pub fn connect_to(url: &str) -> Client {
    let mut client = Client::connect(url, NoTls).expect("connect");
    client
        .batch_execute(
            "DO $$ BEGIN IF current_setting('is_superuser')::boolean THEN
                 SET mfa.sms_min_interval_seconds = 0; SET mfa.sms_sends_per_prefix_per_hour = 100000;
                 SET mfa.sms_sends_per_member_per_hour = 1000;
             END IF; END $$",
        )
        .unwrap();
    client
}

/// The SQLSTATE and message of a failed statement ("" and the text for a client-side error).
/// The server's version as a number (170002 for 17.2), for tests of syntax newer versions added.
pub fn server_version_num(client: &mut Client) -> i32 {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0)
}

pub fn sql_error(e: &postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(d) => (d.code().code().to_string(), d.message().to_string()),
        None => (String::new(), e.to_string()),
    }
}

/// The code of the newest SMS message of `org`, read as a worker reads it (the
/// table keeps it encrypted). Claims the organization's messages for a second.
pub fn sms_code(client: &mut Client, org: &str) -> String {
    let body: String = client
        .query_one(
            "SELECT body FROM mfa.sms_outbox_claim(1000, '1 second', $1) ORDER BY id DESC LIMIT 1",
            &[&org],
        )
        .expect("a message to claim")
        .get(0);
    body.split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a six-digit code in the text")
        .into()
}

/// A throw-away PostgreSQL cluster of its own (run by the postgres user), for tests that crash,
/// restart or reconfigure the server.
pub struct Cluster {
    pub dir: String,
    pub port: u16,
    /// The directory of the server's programs (`bindir()` unless made with `init_with`).
    pub bin: String,
}

pub fn bindir() -> String {
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The major version of the server programs in `bin` (15 for 15.14).
pub fn major_version(bin: &str) -> u32 {
    let out = std::process::Command::new(format!("{bin}/postgres"))
        .arg("--version")
        .output()
        .expect("postgres --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"))
}

/// Runs `bin/program` as the postgres user, in /var/lib/postgresql (pg_upgrade writes its files
/// into the current directory).
pub fn run_as_postgres(
    bin: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new("runuser");
    command.args(["-u", "postgres", "--", &format!("{bin}/{program}")]);
    command.args(args);
    command.envs(env.iter().copied());
    command.current_dir("/var/lib/postgresql");
    command.output().expect("runuser")
}

impl Cluster {
    /// initdb and start on `port` with the extension preloaded and extra postgresql.conf lines
    /// (later lines win: `shared_preload_libraries = ''` takes the preload off).
    pub fn start(name: &str, port: u16, settings: &str) -> Cluster {
        let cluster = Cluster::init(name, port, settings);
        cluster.start_server();
        cluster
    }

    /// `start` with a key file (`keys`: its text) that `mfa.encryption_key_file` names.
    pub fn start_with_key_file(name: &str, port: u16, settings: &str, keys: &str) -> Cluster {
        let cluster = Cluster::init(name, port, settings);
        cluster.write_key_file(keys);
        cluster.append_settings(&format!(
            "mfa.encryption_key_file = '{}'",
            cluster.key_file()
        ));
        cluster.start_server();
        cluster
    }

    pub fn key_file(&self) -> String {
        format!("{}/mfa_keys", self.dir)
    }

    /// Writes the key file, owned by the server's user, mode 0600.
    pub fn write_key_file(&self, keys: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.key_file();
        std::fs::write(&path, keys).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres:postgres", &path])
            .status();
    }

    pub fn append_settings(&self, settings: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{}/postgresql.conf", self.dir))
            .unwrap();
        std::io::Write::write_all(&mut file, format!("{settings}\n").as_bytes()).unwrap();
    }

    pub fn stop_server(&self) {
        let _ = self.run("pg_ctl", &["-D", &self.dir, "-m", "fast", "-w", "stop"]);
    }

    /// Runs one of this cluster's server programs as the postgres user.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        run_as_postgres(&self.bin, program, args, &[])
    }

    /// A base backup of `primary` (`pg_basebackup`, WAL streamed, a fast checkpoint, `extra`
    /// options such as `-R` for a standby) in a cluster of its own, not started; the primary's
    /// server log that came along is removed.
    pub fn base_backup(primary: &Cluster, name: &str, port: u16, extra: &[&str]) -> Cluster {
        let backup = Cluster::adopt(name, port, &primary.bin);
        let primary_port = primary.port.to_string();
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port,
            "-U",
            "postgres",
            "-D",
            &backup.dir,
            "-X",
            "stream",
            "-c",
            "fast",
        ];
        args.extend_from_slice(extra);
        let out = backup.run("pg_basebackup", &args);
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(format!("{}/server.log", backup.dir));
        backup
    }

    /// A cluster whose data directory /var/lib/postgresql/mfa-test-`name` another program
    /// made (pg_basebackup, a restored backup), run with the programs of `bin`: stopped and
    /// removed when dropped, like the others. Any earlier directory of the name is removed.
    pub fn adopt(name: &str, port: u16, bin: &str) -> Cluster {
        // MFA_TEST_DATA_PREFIX: where these clusters go (engineers sharing a machine keep apart).
        let prefix = std::env::var("MFA_TEST_DATA_PREFIX")
            .unwrap_or_else(|_| "/var/lib/postgresql/mfa-test-".to_string());
        let dir = format!("{prefix}{name}");
        let _ = std::process::Command::new("rm")
            .args(["-rf", &dir])
            .status();
        Cluster {
            dir,
            port,
            bin: bin.to_string(),
        }
    }

    /// initdb, configured but not started.
    pub fn init(name: &str, port: u16, settings: &str) -> Cluster {
        Cluster::init_with(name, port, settings, &bindir(), &[])
    }

    /// `init` with the programs of `bin` (another PostgreSQL version) and extra initdb options.
    pub fn init_with(
        name: &str,
        port: u16,
        settings: &str,
        bin: &str,
        initdb_options: &[&str],
    ) -> Cluster {
        // MFA_TEST_DATA_PREFIX: where these clusters go (engineers sharing a machine keep apart).
        let prefix = std::env::var("MFA_TEST_DATA_PREFIX")
            .unwrap_or_else(|_| "/var/lib/postgresql/mfa-test-".to_string());
        let dir = format!("{prefix}{name}");
        let _ = std::process::Command::new("rm")
            .args(["-rf", &dir])
            .status();
        let mut args = vec![
            "-D",
            &dir,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ];
        args.extend_from_slice(initdb_options);
        let out = run_as_postgres(bin, "initdb", &args, &[]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '/tmp'\n\
             max_connections = 60\nfsync = on\nshared_preload_libraries = 'mfa'\n{settings}\n"
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{dir}/postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        Cluster {
            dir,
            port,
            bin: bin.to_string(),
        }
    }

    pub fn start_server(&self) {
        self.start_server_with_env(&[]);
    }

    /// `start_server` with extra environment variables for the postmaster.
    pub fn start_server_with_env(&self, env: &[(&str, &str)]) {
        let log = format!("{}/server.log", self.dir);
        let out = run_as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.dir, "-l", &log, "-w", "-t", "120", "start"],
            env,
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={database}",
            self.port
        )
    }

    /// A database with the extension.
    pub fn create_database(&self, database: &str) -> String {
        let mut admin = Client::connect(&self.url("postgres"), NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .unwrap();
        let url = self.url(database);
        Client::connect(&url, NoTls)
            .unwrap()
            .batch_execute("SET client_min_messages = error; CREATE EXTENSION mfa")
            .unwrap();
        url
    }

    /// Kills the postmaster and every backend with SIGKILL, as a power cut would.
    pub fn kill9(&self) {
        let pid = std::fs::read_to_string(format!("{}/postmaster.pid", self.dir))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-P", &pid])
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        // Wait until no process of the cluster is left.
        for _ in 0..100 {
            let alive = std::process::Command::new("kill")
                .args(["-0", &pid])
                .status()
                .unwrap()
                .success();
            if !alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("{}/server.log", self.dir)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.dir, "-m", "immediate", "-w", "stop"],
        );
        // MFA_KEEP_TEST_CLUSTERS=1 keeps the data directory and its server.log for a post-mortem.
        if std::env::var_os("MFA_KEEP_TEST_CLUSTERS").is_none() {
            let _ = std::process::Command::new("rm")
                .args(["-rf", &self.dir])
                .status();
        }
    }
}

/// `n` six-digit codes, none of them valid for `secret` (base32) within two minutes of now.
pub fn wrong_codes(secret: &str, n: usize) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret);
    let valid: std::collections::HashSet<String> =
        (0..9).map(|i| totp.generate(now - 120 + i * 30)).collect();
    (100_000..)
        .map(|c: u32| c.to_string())
        .filter(|c| !valid.contains(c))
        .take(n)
        .collect()
}

/// Every table of the mfa schema (and `extra` tables) with its row count and the md5 of its rows
/// in primary key order (rows as text, in UTC), to compare a database before and after a move.
pub fn table_hashes(client: &mut Client, extra: &[&str]) -> Vec<(String, i64, String)> {
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3",
        )
        .unwrap();
    let mut tables: Vec<(String, String)> = client
        .query(
            "SELECT c.oid::regclass::text,
                    coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                                FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                                JOIN pg_attribute a ON a.attnum = k.attnum
                               WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid),
                             't::text')
               FROM pg_class c
              WHERE c.relnamespace = 'mfa'::regnamespace AND c.relkind IN ('r', 'p')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for table in extra {
        tables.push((table.to_string(), "t::text".to_string()));
    }
    tables
        .into_iter()
        .map(|(table, order)| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {order})), '')
                           FROM {table} t"
                    ),
                    &[],
                )
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            (table, row.get(0), row.get(1))
        })
        .collect()
}
