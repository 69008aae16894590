-- The Matrix events sent for incoming messages are the core's message map (remote id -> event id),
-- written with the inbox row's delivered state; a read receipt covers them through the core's
-- "read up to" (migration 016). This table repeated both, with one more commit per message.
DROP TABLE matrix_sent;
