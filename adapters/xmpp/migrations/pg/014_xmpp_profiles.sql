-- PostgreSQL dialect of ../014_xmpp_profiles.sql.
ALTER TABLE xmpp_contacts ADD COLUMN about text;
ALTER TABLE xmpp_contacts ADD COLUMN photo_id text;
ALTER TABLE xmpp_contacts ADD COLUMN photo_hash text;
ALTER TABLE xmpp_contacts ADD COLUMN photo_type text;
ALTER TABLE xmpp_contacts ADD COLUMN photo bytea;
