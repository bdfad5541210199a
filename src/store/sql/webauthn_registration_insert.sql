-- A new passkey, counted on its member (whose row the caller holds locked); nothing is written
-- when its credential id is registered already, to anyone.
--   $1 organization_id   $2 member_id   $3 webauthn_registration_id   $4 credential_id
--   $5 public_key (COSE)   $6 algorithm   $7 sign_count   $8 domain   $9 user_agent
--   $10 authenticator_type   $11 aaguid   $12 attestation_format   $13 transports
--   $14 user_verified   $15 backup_eligible   $16 backed_up   $17 the clock
WITH stored AS (
    INSERT INTO mfa.webauthn_registrations (organization_id, member_id, webauthn_registration_id,
                credential_id, public_key, algorithm, sign_count, domain, user_agent,
                authenticator_type, aaguid, attestation_format, transports, user_verified,
                backup_eligible, backed_up, created_at)
    VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11::uuid, $12, $13, $14, $15, $16, $17)
    ON CONFLICT DO NOTHING
 RETURNING 1),
counted AS (
    UPDATE mfa.members SET webauthn_registrations = webauthn_registrations + 1, updated_at = $17
     WHERE organization_id = $1 AND member_id = $2 AND EXISTS (SELECT FROM stored))
SELECT EXISTS (SELECT FROM stored)
