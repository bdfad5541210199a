UPDATE mfa.members SET
       mfa_phone_number = CASE WHEN $6 THEN $7 ELSE mfa_phone_number END,
       mfa_phone_country = CASE WHEN $6 THEN $8 ELSE mfa_phone_country END,
       mfa_phone_number_verified = CASE WHEN $13 IS NOT NULL THEN $13
                                        WHEN $6 THEN false ELSE mfa_phone_number_verified END,
       phone_id = CASE WHEN $6 THEN $12::uuid ELSE phone_id END,
       mfa_enrolled = coalesce($9, mfa_enrolled),
       is_breakglass = coalesce($10, is_breakglass),
       default_mfa_method = coalesce($11, default_mfa_method),
       updated_at = now()
 WHERE organization_id = $1 AND member_id = $2
