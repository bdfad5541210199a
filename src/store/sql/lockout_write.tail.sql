              )
    ON CONFLICT (organization_id, member_id) DO UPDATE
   SET failed_attempts = EXCLUDED.failed_attempts,
       failure_window_started_at = EXCLUDED.failure_window_started_at,
       lock_created_at = EXCLUDED.lock_created_at,
       lock_expires_at = EXCLUDED.lock_expires_at,
       lock_count = EXCLUDED.lock_count,
       updated_at = EXCLUDED.updated_at,
       devices_revoked_before = greatest(l.devices_revoked_before, EXCLUDED.devices_revoked_before)
