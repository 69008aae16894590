-- PostgreSQL dialect of ../015_matrix_ghost_avatars.sql.
ALTER TABLE matrix_ghosts ADD COLUMN avatar_picture_id text;
ALTER TABLE matrix_ghosts ADD COLUMN avatar_url text;
