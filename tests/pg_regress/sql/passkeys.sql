-- Passkeys (WebAuthn): the project's origins, the options a browser is handed for each ceremony,
-- what is refused before anything is verified, and what a session's factors say about
-- phishing resistance. (The ceremonies themselves need an authenticator: the integration tests
-- bring a software one, and the reference web application's browser tests a virtual one.)
\pset null '∅'

-- Origins the project's pages are served from (mfa_admin): normalized as browsers serialize
-- them; http only for localhost and 127.0.0.1.
SELECT mfa.webauthn_allowed_origins_set(ARRAY['https://Login.Example.com:443', 'http://localhost:8080']);
SELECT mfa.webauthn_allowed_origins_set(ARRAY['http://login.example.com']);
SELECT mfa.webauthn_allowed_origins_set(ARRAY['https://example.com/login']);
SELECT mfa.webauthn_allowed_origins_get();

SELECT mfa.organization_upsert('piedpiper', 'REQUIRED_FOR_ALL') ->> 'organization_id' AS organization;
SELECT mfa.member_upsert('piedpiper', 'richard') ->> 'member_id' AS member;

-- Enrollment during a login the organization requires MFA for: options for
-- navigator.credentials.create, with a fresh 32-byte challenge bound to the login and a random
-- user handle (never the member id).
SELECT mfa.primary_authenticate('piedpiper', 'richard') ->> 'intermediate_session_token' AS token \gset
SELECT mfa.webauthn_register_start('piedpiper', 'richard', 'example.com', :'token', 'platform')
       -> 'public_key_credential_creation_options' AS options \gset
SELECT :'options'::jsonb -> 'rp' AS rp,
       length(:'options'::jsonb ->> 'challenge') AS challenge_chars,
       length(:'options'::jsonb -> 'user' ->> 'id') AS user_handle_chars,
       :'options'::jsonb -> 'user' ->> 'name' AS user_name,
       :'options'::jsonb -> 'pubKeyCredParams' AS algorithms,
       :'options'::jsonb -> 'authenticatorSelection' AS selection,
       :'options'::jsonb ->> 'attestation' AS attestation,
       :'options'::jsonb -> 'timeout' AS timeout_ms;
-- Only the challenge's SHA-256 is stored, with what it is bound to.
SELECT ceremony, token_hash IS NOT NULL AS bound_to_login, domain, user_verification,
       authenticator_type, expires_at - created_at AS lifetime,
       octet_length(challenge_hash) AS stored_bytes
  FROM mfa.webauthn_challenges WHERE organization_id = 'piedpiper';

-- The domain (relying-party id) is the host of an allowed origin or a registrable suffix of it,
-- never a public suffix.
SELECT mfa.webauthn_register_start('piedpiper', 'richard', 'com', :'token');
SELECT mfa.webauthn_register_start('piedpiper', 'richard', 'evil.example', :'token');
SELECT mfa.webauthn_register_start('piedpiper', 'richard', 'example.com', :'token', 'usb');

-- A response that is not a PublicKeyCredential is the caller's mistake; one that answers no
-- live challenge of this login is a failed attempt, counted toward the lock like a wrong code.
SELECT mfa.webauthn_register('piedpiper', 'richard', '{"type": "public-key"}', :'token');
SELECT mfa.webauthn_register('piedpiper', 'richard', jsonb_build_object(
           'type', 'public-key', 'id', 'AAAAAAAAAAAAAAAAAAAAAA', 'rawId', 'AAAAAAAAAAAAAAAAAAAAAA',
           'response', jsonb_build_object(
               'clientDataJSON', translate(encode(convert_to(
                   '{"type":"webauthn.create","challenge":"bm90LWlzc3VlZA","origin":"https://login.example.com"}',
                   'UTF8'), 'base64'), E'+/=\n', '-_'),
               'attestationObject', 'oA')), :'token') - 'request_id' AS unknown_challenge;

-- Signing in needs a passkey to offer.
SELECT mfa.webauthn_authenticate_start('piedpiper', 'richard', 'example.com', :'token');

-- An organization restricted to other methods refuses passkeys.
SELECT mfa.organization_upsert('piedpiper', NULL, 'RESTRICTED', ARRAY['totp']) -> 'allowed_mfa_methods' AS allowed;
SELECT mfa.webauthn_register_start('piedpiper', 'richard', 'example.com', :'token');
SELECT mfa.organization_upsert('piedpiper', NULL, 'ALL_ALLOWED') ->> 'mfa_methods' AS methods;

-- What a session's factors column says, for RLS policies and OIDC tokens: phishing-resistant when
-- its newest second factor is a sign-in with a registered passkey (one registered in the same
-- login proves a new key only). The one-argument forms trust the column; policies use the
-- three-argument forms, which count sealed factors only.
SELECT mfa.session_phishing_resistant(f) AS phishing_resistant, mfa.session_amr(f) AS amr,
       mfa.session_aal(f) AS aal
  FROM (VALUES
    ('[{"type": "password"}, {"type": "totp"}]'::jsonb),
    ('[{"type": "password"}, {"type": "webauthn", "webauthn_factor": {"ceremony": "authentication", "user_verified": true}}]'),
    ('[{"type": "password"}, {"type": "totp"}, {"type": "webauthn", "webauthn_factor": {"ceremony": "registration"}}]'),
    ('[{"type": "sso"}, {"type": "webauthn", "webauthn_factor": {"ceremony": "authentication"}}, {"type": "otp", "delivery_method": "sms"}]')
  ) AS sessions (f);
SELECT mfa.session_phishing_resistant('piedpiper', 'richard',
           '[{"type": "webauthn", "webauthn_factor": {}}]') AS unsealed_counts_for_nothing;
