//! One call's orchestration, one use case per file; the files form a DAG. At its bottom, the steps
//! every factor shares: `token` (the intermediate session token), `attempt` (begin / admit / fail /
//! succeed), `member` (load a member with their live ledger state, in lock order), `keys` (which key
//! encrypts, which decrypts) and `answer` (Stytch-shaped answers). Flows call `store` (SQL) and
//! `server` (shared memory, settings) and join them; nothing here is called by PostgreSQL directly.

pub mod administration;
pub mod answer;
pub mod attempt;
pub mod devices;
pub mod gate;
pub mod import;
pub mod keys;
pub mod ledger_flush;
pub mod login;
pub mod member;
pub mod metrics;
pub mod outbox;
pub mod removal;
pub mod reports;
pub mod retention;
pub mod rotation;
pub mod sms;
pub mod token;
pub mod totp;
pub mod webauthn;
