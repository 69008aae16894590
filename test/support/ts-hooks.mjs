// Lets a child process run the project's TypeScript as Jest does (SWC, no type check):
//   node --import ./test/support/ts-hooks.mjs test/support/some-child.ts
// A relative `./x.js` import resolves to `./x.ts` when only that exists; `.ts` files are transformed.
import { register } from 'node:module';

register('./ts-hooks-loader.mjs', import.meta.url);
