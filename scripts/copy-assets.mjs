// tsc compiles TypeScript only: copy the files the code reads at run time next to it in dist/.
import { cpSync, rmSync } from 'node:fs';

// A file removed from the sources must not linger in dist/ (a stale migration breaks the sequence).
for (const dir of [
  'dist/src/store/migrations',
  'dist/emulator/migrations',
  'dist/adapters/matrix/migrations',
  'dist/adapters/xmpp/migrations',
]) {
  rmSync(dir, { recursive: true, force: true });
}

cpSync('src/store/migrations', 'dist/src/store/migrations', { recursive: true });
cpSync('emulator/migrations', 'dist/emulator/migrations', { recursive: true });
// Each adapter's own tables: its migrations live beside it.
for (const adapter of ['matrix', 'xmpp']) {
  cpSync(`adapters/${adapter}/migrations`, `dist/adapters/${adapter}/migrations`, { recursive: true });
}
// The operator snippets (config/*.example), read by test/support/xmpp-servers.ts in the e2e benchmark.
cpSync('config', 'dist/config', { recursive: true });
