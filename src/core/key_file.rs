//! The server's master keys as an operator writes them: a key file (or the output of a key
//! command) with one key per line, oldest first — the last one encrypts, every one decrypts.

use crate::core::crypto::{parse_master_key, KEY_LEN};

/// More keys than this in force at once is a rotation that was never finished.
pub const MAX_KEYS: usize = 16;

/// The keys of a key file's text: one per line (64 hexadecimal digits or base64 of 32 bytes),
/// blank lines and `#` comments ignored, a key repeated kept once. The error names the line but
/// never shows its text (it may be a key with a typo).
pub fn parse_keys(text: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let mut keys: Vec<[u8; KEY_LEN]> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_master_key(line).map_err(|_| {
            format!(
                "line {} is not a key (64 hexadecimal digits or the base64 encoding of 32 bytes)",
                number + 1
            )
        })?;
        // A key listed twice stays where it was first listed: appending an old key again must
        // not make it the encrypting one by accident.
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err("it holds no key".into());
    }
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "it holds {} keys; at most {MAX_KEYS} can be in force (finish a rotation and remove the old ones)",
            keys.len()
        ));
    }
    Ok(keys)
}

/// Whether a key file's owner and mode keep it to the server: owned by the server's user with no
/// access for group or others, or owned by root and at most readable by its group (PostgreSQL's
/// own rule for `ssl_key_file`).
pub fn check_file_access(mode: u32, owner: u32, server_user: u32) -> Result<(), String> {
    let private = if owner == server_user {
        mode & 0o077 == 0
    } else if owner == 0 {
        mode & 0o037 == 0
    } else {
        return Err("it must be owned by the database server's user or by root".into());
    };
    if private {
        Ok(())
    } else {
        Err(format!(
            "its mode {:04o} gives access to other users (use 0600, or 0640 when owned by root)",
            mode & 0o7777
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_oldest_first_without_comments_or_repeats() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let text = format!("# rotated 2026-12\n\n{a}\n  {b}  \n{a}\n");
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys, vec![[0x11; 32], [0x22; 32]]);
    }

    #[test]
    fn a_bad_line_is_named_not_shown() {
        let text = format!("{}\n{}x\n", "11".repeat(32), "22".repeat(32));
        let e = parse_keys(&text).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("2222"), "{e}");
        assert!(parse_keys("# nothing\n").is_err());
        let many: String = (0..=MAX_KEYS)
            .map(|i| format!("{:064x}\n", i + 1))
            .collect();
        assert!(parse_keys(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn only_a_private_file_is_accepted() {
        assert!(check_file_access(0o100600, 999, 999).is_ok());
        assert!(check_file_access(0o100400, 999, 999).is_ok());
        assert!(check_file_access(0o100640, 999, 999).is_err());
        assert!(check_file_access(0o100604, 999, 999).is_err());
        assert!(check_file_access(0o100640, 0, 999).is_ok());
        assert!(check_file_access(0o100644, 0, 999).is_err());
        assert!(check_file_access(0o100600, 1000, 999).is_err());
    }
}
