-- mfa 0.2.0 → 0.3.0
--  * sms_outbox_claim for one organization reads that organization's deliverable messages through
--    an index of their own, instead of walking every organization's pending messages.
--  * (library only) request ids are time-ordered UUIDs (v7); mfa.sms_outbox_notify.

CREATE INDEX sms_outbox_organization_deliverable ON mfa.sms_outbox (organization_id, visible_at)
    WHERE status = 'pending';
