-- The member's passkeys as answered by webauthn_registrations_get: no key material.
--   $1 organization_id   $2 member_id
SELECT jsonb_build_object(
           'webauthn_registration_id', webauthn_registration_id,
           'name', name,
           'domain', domain,
           'user_agent', user_agent,
           'authenticator_type', authenticator_type,
           'aaguid', aaguid,
           'attestation_format', attestation_format,
           'transports', to_jsonb(transports),
           'user_verified', user_verified,
           'backup_eligible', backup_eligible,
           'backed_up', backed_up,
           'clone_suspected_at', clone_suspected_at,
           'created_at', created_at,
           'last_authenticated_at', last_authenticated_at)
  FROM mfa.webauthn_registrations
 WHERE organization_id = $1 AND member_id = $2
 ORDER BY created_at, webauthn_registration_id
