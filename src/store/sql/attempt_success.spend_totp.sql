-- A TOTP success spends the code: the code's step becomes the last used one; a pending app becomes active
spent_totp AS (
    UPDATE mfa.totp_registrations
       SET last_used_step = $6, status = 'active', expires_at = NULL,
           activated_at = coalesce(activated_at, $12)
     WHERE organization_id = $1 AND member_id = $2)
