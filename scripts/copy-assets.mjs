// tsc compiles TypeScript only: copy the files the code reads at run time next to it in dist/.
import { cpSync } from 'node:fs';

cpSync('src/store/migrations', 'dist/src/store/migrations', { recursive: true });
cpSync('emulator/migrations', 'dist/emulator/migrations', { recursive: true });
// Each adapter's own tables: its migrations live beside it.
for (const adapter of ['matrix', 'xmpp']) {
  cpSync(`adapters/${adapter}/migrations`, `dist/adapters/${adapter}/migrations`, { recursive: true });
}
// The operator snippets (config/*.example), read by test/support/xmpp-servers.ts in the e2e benchmark.
cpSync('config', 'dist/config', { recursive: true });
