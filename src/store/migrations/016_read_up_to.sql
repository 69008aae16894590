-- Read receipts "up to": a local user who reads a message has read the contact's messages before it
-- too (Matrix read receipts, XEP-0333 displayed markers). `message_map_order` lists a chat's mapped
-- messages in the order they were mapped (SQLite puts the rowid after `portal_id` in the index);
-- `read_up_to` is the rowid of the last one a read receipt covered, so each is receipted once.
CREATE INDEX message_map_order ON message_map (portal_id);
ALTER TABLE portals ADD COLUMN read_up_to INTEGER NOT NULL DEFAULT 0;
-- What was mapped before this version counts as read: no flood of receipts for old messages.
UPDATE portals SET read_up_to = coalesce((SELECT max(rowid) FROM message_map WHERE portal_id = portals.id), 0);
