-- PostgreSQL dialect of ../007_matrix_double_puppets.sql.
CREATE TABLE matrix_double_puppets (
  user_id text PRIMARY KEY,
  enabled_at bigint NOT NULL
);
