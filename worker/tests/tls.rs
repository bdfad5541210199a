//! The worker's connection to PostgreSQL over TLS: a cluster of its own with a certificate made by
//! the test (a CA of its own signs it), reached with `sslmode` require, verify-ca and verify-full.

mod common;

use std::process::Command;

const PORT: u16 = 28827;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(program: &str, args: &[&str]) {
    let mut all = vec!["-u", "postgres", "--"];
    let path = common::server_program(program);
    all.push(&path);
    all.extend_from_slice(args);
    run("runuser", &all);
}

/// A CA (its certificate in `{dir}/{name}.crt`) in `dir`.
fn make_ca(dir: &str, name: &str) {
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=mfa test {name}"),
            "-keyout",
            &format!("{dir}/{name}.key"),
            "-out",
            &format!("{dir}/{name}.crt"),
        ],
    );
}

struct Server {
    dir: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &common::server_program("pg_ctl"),
                "-D",
                &format!("{}/data", self.dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster with TLS on, its certificate for localhost and 127.0.0.1 signed by the CA "ca".
fn tls_server() -> Server {
    let dir = "/var/lib/postgresql/mfa-test-worker-tls".to_string();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server { dir: dir.clone() };
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    std::fs::write(
        format!("{dir}/san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{dir}/server.key"),
            "-out",
            &format!("{dir}/server.csr"),
        ],
    );
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{dir}/server.csr"),
            "-CA",
            &format!("{dir}/ca.crt"),
            "-CAkey",
            &format!("{dir}/ca.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{dir}/san.ext"),
            "-out",
            &format!("{dir}/server.crt"),
        ],
    );
    run("chown", &["-R", "postgres:postgres", &dir]);
    run("chmod", &["600", &format!("{dir}/server.key")]);
    let data = format!("{dir}/data");
    as_postgres(
        "initdb",
        &[
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    );
    std::fs::write(
        format!("{data}/postgresql.auto.conf"),
        format!(
            "listen_addresses = '127.0.0.1'\nport = {PORT}\nunix_socket_directories = '/tmp'\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n"
        ),
    )
    .unwrap();
    // Only TLS connections over TCP.
    std::fs::write(
        format!("{data}/pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    run("chown", &["-R", "postgres:postgres", &dir]);
    as_postgres(
        "pg_ctl",
        &[
            "-D",
            &data,
            "-l",
            &format!("{dir}/server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    server
}

async fn connects(url: &str) -> Result<bool, String> {
    let (client, _wakeups) = mfa_sms_worker::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn the_worker_reaches_postgres_over_tls_and_checks_who_answers() {
    let server = tls_server();
    let dir = &server.dir;
    let base =
        format!("host=localhost hostaddr=127.0.0.1 port={PORT} user=postgres dbname=postgres");
    // Encrypted, as libpq's require: the certificate is not checked.
    assert_eq!(connects(&format!("{base} sslmode=require")).await, Ok(true));
    // The server takes TLS only: prefer finds it too.
    assert_eq!(connects(&base).await, Ok(true));
    // Checked against the CA that signed it, host name included.
    assert_eq!(
        connects(&format!(
            "{base} sslmode=verify-full sslrootcert={dir}/ca.crt"
        ))
        .await,
        Ok(true)
    );
    assert_eq!(
        connects(&format!(
            "postgres://postgres@localhost:{PORT}/postgres?sslmode=verify-ca&sslrootcert={dir}/ca.crt"
        ))
        .await,
        Ok(true)
    );
    // Another CA: refused.
    let refused = connects(&format!(
        "{base} sslmode=verify-full sslrootcert={dir}/other-ca.crt"
    ))
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // The right CA, the wrong name: verify-full refuses, verify-ca (chain only) accepts.
    let by_ip = format!("host=127.0.0.2 hostaddr=127.0.0.1 port={PORT} user=postgres dbname=postgres sslrootcert={dir}/ca.crt");
    let refused = connects(&format!("{by_ip} sslmode=verify-full")).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        connects(&format!("{by_ip} sslmode=verify-ca")).await,
        Ok(true)
    );
    // Without TLS the server turns the worker away (no plain-text fallback to hide behind).
    assert!(connects(&format!("{base} sslmode=disable")).await.is_err());
}
