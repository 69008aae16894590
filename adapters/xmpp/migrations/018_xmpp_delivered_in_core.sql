-- The stanza id an incoming message was shown under is the core's message map (remote id -> stanza
-- id), written with the inbox row's delivered state. This table repeated it, with one more commit
-- per message.
DROP TABLE xmpp_delivered;
