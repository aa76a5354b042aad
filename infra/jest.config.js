/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // tsconfig has isolatedModules, so ts-jest only transpiles; `tsc --noEmit` does the type check.
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  // Two cores shared with the Rust build: check.sh runs jest --runInBand.
  maxWorkers: 1,
};
