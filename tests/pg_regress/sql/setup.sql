-- Installs the extension in the regression database. The server reads its master key from
-- mfa.encryption_key_file (scripts/cluster.sh writes one); without one the extension generates a
-- per-database key and warns.
CREATE EXTENSION mfa;
SELECT extname, extversion IS NOT NULL AS installed FROM pg_extension WHERE extname = 'mfa';
