-- Contacts' pictures as their ghosts' avatars (adapters/matrix/ghosts.ts): the picture's id at the
-- gateway and the mxc URI it was uploaded to, so that an unchanged picture is not uploaded again.
ALTER TABLE matrix_ghosts ADD COLUMN avatar_picture_id TEXT;
ALTER TABLE matrix_ghosts ADD COLUMN avatar_url TEXT;
