DROP VIEW IF EXISTS dbdedup.exact_duplicates;
DROP VIEW IF EXISTS dbdedup.errors;
DROP TABLE IF EXISTS dbdedup.load_errors;
DROP TABLE IF EXISTS dbdedup.images;
DROP TABLE IF EXISTS dbdedup.load_runs;
DROP SEQUENCE IF EXISTS dbdedup.change_seq;
