// tsc compiles TypeScript only: copy the files the code reads at run time next to it in dist/.
import { cpSync } from 'node:fs';

cpSync('src/store/migrations', 'dist/src/store/migrations', { recursive: true });
cpSync('emulator/migrations', 'dist/emulator/migrations', { recursive: true });
