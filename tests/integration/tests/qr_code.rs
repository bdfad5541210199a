//! The QR code a member scans decodes, with a real QR reader (zbarimg), to the otpauth URI.

mod common;
use base64::Engine;
use common::*;

#[test]
fn qr_code_png_decodes_to_the_otpauth_uri() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "qr", "ann.lee@example.com");
    let created = json(
        &mut c,
        "SELECT mfa.totp_create($1, 'ann.lee@example.com')",
        &[&org],
    );
    let uri = created["otpauth_uri"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(
            created["qr_code"]
                .as_str()
                .unwrap()
                .strip_prefix("data:image/png;base64,")
                .unwrap(),
        )
        .unwrap();
    let path = std::env::temp_dir().join(format!("{org}.png"));
    std::fs::write(&path, png).unwrap();
    let out = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .expect("zbarimg (zbar-tools) is installed by make test");
    std::fs::remove_file(&path).ok();
    assert!(out.status.success(), "zbarimg could not read the QR code");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end(), uri);
    assert!(
        uri.starts_with("otpauth://totp/MFA:ann.lee%40example.com?secret="),
        "{uri}"
    );
    assert!(
        uri.ends_with("&issuer=MFA&algorithm=SHA1&digits=6&period=30"),
        "{uri}"
    );
}
