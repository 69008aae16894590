import { ConfigError, InteropError } from '../../src/errors.js';

describe('InteropError', () => {
  it('carries a stable code and the subclass name', () => {
    const err = new ConfigError(['a: expected a string, found 1'], 'config.yaml');
    expect(err).toBeInstanceOf(InteropError);
    expect(err.code).toBe('config_invalid');
    expect(err.name).toBe('ConfigError');
    expect(err.message).toBe('invalid configuration in config.yaml:\n  - a: expected a string, found 1');
  });
});
