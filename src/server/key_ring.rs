//! The server's master keys in shared memory: read by the postmaster at start from
//! `mfa.encryption_key_file` or the output of `mfa.encryption_key_command` (both set only in the
//! server's configuration, both holding a path or a command, never a key), read again by the
//! attempt ledger's launcher on every configuration reload, so a key can be added or retired
//! without a restart. No SQL path returns them: shared memory is reachable only by the server's
//! own processes.

use crate::core::crypto::KEY_LEN;
use crate::core::key_file::{check_file_access, parse_keys, MAX_KEYS};
use pgrx::pg_sys;
use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::ptr::null_mut;

const NAME: &CStr = c"mfa key ring";

#[repr(C)]
struct Ring {
    lock: *mut pg_sys::LWLock,
    /// Bumped on every change, so that a backend knows its copy is stale.
    generation: u64,
    count: usize,
    keys: [[u8; KEY_LEN]; MAX_KEYS],
}

static mut RING: *mut Ring = null_mut();
/// What the postmaster read at start, until the shared memory exists to hold it.
static mut AT_START: ([[u8; KEY_LEN]; MAX_KEYS], usize) = ([[0; KEY_LEN]; MAX_KEYS], 0);

/// Where the keys come from, as configured.
enum Source {
    File(String),
    Command(String),
}

fn configured_source() -> Result<Option<Source>, String> {
    let text = |s: &pgrx::guc::GucSetting<Option<std::ffi::CString>>| {
        s.get()
            .and_then(|s| s.into_string().ok())
            .filter(|s| !s.trim().is_empty())
    };
    match (
        text(&crate::server::settings::ENCRYPTION_KEY_FILE),
        text(&crate::server::settings::ENCRYPTION_KEY_COMMAND),
    ) {
        (Some(_), Some(_)) => {
            Err("set mfa.encryption_key_file or mfa.encryption_key_command, not both".into())
        }
        (Some(path), None) => Ok(Some(Source::File(path))),
        (None, Some(command)) => Ok(Some(Source::Command(command))),
        (None, None) => Ok(None),
    }
}

fn data_directory_owner() -> Result<u32, String> {
    let dir = unsafe { CStr::from_ptr(pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    std::fs::metadata(&dir)
        .map(|m| m.uid())
        .map_err(|e| format!("the data directory cannot be read: {e}"))
}

fn read_file(path: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let describe = |e: String| format!("mfa.encryption_key_file {path}: {e}");
    let file = std::fs::File::open(path).map_err(|e| describe(e.to_string()))?;
    let meta = file.metadata().map_err(|e| describe(e.to_string()))?;
    check_file_access(meta.mode(), meta.uid(), data_directory_owner()?).map_err(describe)?;
    let text = std::io::read_to_string(file).map_err(|e| describe(e.to_string()))?;
    parse_keys(&text).map_err(describe)
}

fn run_command(command: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    // The command's own output never reaches a log: only its exit status does.
    let output = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("mfa.encryption_key_command could not be run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "mfa.encryption_key_command failed ({})",
            output.status
        ));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| "mfa.encryption_key_command printed something that is not text".to_string())?;
    parse_keys(&text).map_err(|e| format!("mfa.encryption_key_command's output: {e}"))
}

/// The configured keys (none when neither setting is set).
fn read_configured() -> Result<Vec<[u8; KEY_LEN]>, String> {
    match configured_source()? {
        None => Ok(Vec::new()),
        Some(Source::File(path)) => read_file(&path),
        Some(Source::Command(command)) => run_command(&command),
    }
}

/// Reads the keys in the postmaster, while it preloads the library; a key that cannot be read
/// stops the server from starting (a server that encrypted with some other key would strand every
/// secret it writes).
pub fn load_at_preload() {
    match read_configured() {
        Ok(keys) => unsafe {
            let mut at_start = ([[0; KEY_LEN]; MAX_KEYS], keys.len());
            at_start.0[..keys.len()].copy_from_slice(&keys);
            AT_START = at_start;
        },
        Err(e) => pgrx::error!("mfa: {e}"),
    }
}

/// Asks for the ring's shared memory: called by the ledger's request hook (one hook chain for
/// the library's shared memory).
///
/// # Safety
/// Only from a shmem request hook.
pub unsafe fn request_shared_memory() {
    unsafe {
        pg_sys::RequestAddinShmemSpace(size_of::<Ring>());
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

/// Finds or creates the ring, filled with the keys read at start: called by the ledger's
/// startup hook, which holds `AddinShmemInitLock`.
///
/// # Safety
/// Only from a shmem startup hook, under `AddinShmemInitLock`.
pub unsafe fn attach_shared_memory() {
    unsafe {
        let mut found = false;
        let ring =
            pg_sys::ShmemInitStruct(NAME.as_ptr(), size_of::<Ring>(), &mut found).cast::<Ring>();
        if !found {
            std::ptr::write_bytes(ring.cast::<u8>(), 0, size_of::<Ring>());
            (*ring).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock;
            let ring = &mut *ring;
            (ring.keys, ring.count) = AT_START;
            ring.generation = 1;
        }
        RING = ring;
    }
}

/// The ring under its lock; released on drop.
struct Locked(*mut Ring);

impl Locked {
    fn take(mode: pg_sys::LWLockMode::Type) -> Option<Locked> {
        unsafe {
            if RING.is_null() {
                return None;
            }
            pg_sys::LWLockAcquire((*RING).lock, mode);
            Some(Locked(RING))
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        unsafe { pg_sys::LWLockRelease((*self.0).lock) };
    }
}

/// The server's keys, oldest first (empty without preload or without a key file or command),
/// and the generation they belong to.
pub fn server_keys() -> (u64, Vec<[u8; KEY_LEN]>) {
    match Locked::take(pg_sys::LWLockMode::LW_SHARED) {
        None => (0, Vec::new()),
        Some(held) => unsafe {
            let ring = &*held.0;
            (ring.generation, ring.keys[..ring.count].to_vec())
        },
    }
}

/// Reads the key file or command again (on a configuration reload). Keys that cannot be read
/// leave the ring as it was: a typo in the file must not take the keys away from running logins.
pub fn reload() {
    let keys = match read_configured() {
        Ok(keys) if !keys.is_empty() => keys,
        Ok(_) => return,
        Err(e) => {
            pgrx::warning!("mfa: the encryption keys were not reloaded: {e}");
            return;
        }
    };
    let Some(held) = Locked::take(pg_sys::LWLockMode::LW_EXCLUSIVE) else {
        return;
    };
    unsafe {
        let ring = &mut *held.0;
        if ring.keys[..ring.count] != keys[..] {
            ring.keys = [[0; KEY_LEN]; MAX_KEYS];
            ring.keys[..keys.len()].copy_from_slice(&keys);
            ring.count = keys.len();
            ring.generation += 1;
            drop(held);
            pgrx::log!("mfa: reloaded {} encryption key(s)", keys.len());
        }
    }
}
