-- Installs the extension in the regression database. Production sets mfa.encryption_key (here a
-- fixed test key); without it the extension generates a per-database key and warns.
SELECT format('ALTER DATABASE %I SET mfa.encryption_key = %L', current_database(),
              '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f') \gexec
\c
CREATE EXTENSION mfa;
SELECT extname, extversion IS NOT NULL AS installed FROM pg_extension WHERE extname = 'mfa';
