-- An SMS success spends the code: the code is used up
spent_sms_code AS (
    UPDATE mfa.sms_codes SET used_at = $12 WHERE organization_id = $1 AND member_id = $2)
