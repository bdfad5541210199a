-- members_search's total (after members_search.head.sql, with $2 = ''): every member that passes
-- the filters.
SELECT count(*) FROM matching
