-- members_search's total (after members_search.head.sql): every member that passes the filters,
-- whatever the page.
SELECT count(*) FROM matching
