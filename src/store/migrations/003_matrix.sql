-- Reserved for the Matrix adapter's tables (adapters/matrix/store.ts).
SELECT 1;
