-- Contacts' profiles (docs/PROTOCOL.md 5.8) as the user's client is shown them: the push name (in
-- the existing `name`), the about text (vCard DESC) and the picture (vCard PHOTO), with its id at
-- the gateway and its SHA-1 (XEP-0153's presence hash).
ALTER TABLE xmpp_contacts ADD COLUMN about TEXT;
ALTER TABLE xmpp_contacts ADD COLUMN photo_id TEXT;
ALTER TABLE xmpp_contacts ADD COLUMN photo_hash TEXT;
ALTER TABLE xmpp_contacts ADD COLUMN photo_type TEXT;
ALTER TABLE xmpp_contacts ADD COLUMN photo BLOB;
