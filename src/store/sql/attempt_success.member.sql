-- A success that changes the member: the member's enrollment, default method and verified phone
changed AS (
    UPDATE mfa.members
       SET mfa_enrolled = $9, default_mfa_method = $10, mfa_phone_number_verified = $11,
           updated_at = $12
     WHERE organization_id = $1 AND member_id = $2
 RETURNING updated_at)
