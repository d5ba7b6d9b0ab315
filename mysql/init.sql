-- Creates the market's database on MySQL/MariaDB (run once by an administrator, or
-- mounted into a MySQL container's /docker-entrypoint-initdb.d). utf8mb4 so product
-- titles and descriptions in any script round-trip; FULLTEXT search needs InnoDB.
CREATE DATABASE IF NOT EXISTS pdash CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
