-- Of organizations $1, those whose shards this Citus node holds (their colocated shards of every
-- per-organization table), in $1's order; all of them before mfa.distribute(). Reads Citus's
-- catalog only.
SELECT o.organization_id
  FROM unnest($1::text[]) WITH ORDINALITY AS o (organization_id, n)
 WHERE CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                              WHERE logicalrelid = 'mfa.organizations'::pg_catalog.regclass)
            THEN true
            ELSE EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
                          WHERE p.shardid = pg_catalog.get_shard_id_for_distribution_column('mfa.organizations', o.organization_id)
                            AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group))
       END
 ORDER BY o.n
