/** Jest runs TypeScript as native ESM (node --experimental-vm-modules), transformed by SWC.
 * Type checking is `npm run typecheck`, which `npm test` runs first. */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'es6' },
      },
    ],
  },
  testTimeout: 30000,
  // Two test files at a time: the integration suites mostly wait on their servers (Synapse,
  // Prosody, PostgreSQL) and on the faults they inject, so two share a 2-core machine well (the
  // whole run: 977 s with one, 506 s with two). Every server a test starts, and every port it
  // listens on, is its own (free ports, temporary directories).
  maxWorkers: 2,
  // Tests close what they open; this only keeps a leaked handle from hanging CI after the results are in.
  forceExit: true,
};
