-- A page of members_search (after members_search.head.sql): the members after $2 in member_id
-- order, at most $3 of them.
SELECT * FROM matching
 ORDER BY member_id
 LIMIT $3
