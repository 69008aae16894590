-- Reserved for the XMPP adapter's tables (adapters/xmpp/store.ts).
SELECT 1;
