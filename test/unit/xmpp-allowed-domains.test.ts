import { allowedDomainsOf } from '../../adapters/xmpp/index.js';

describe('who may use the XMPP gateway (xmpp.allowed_domains)', () => {
  it('defaults to the domain the component belongs to, so users of other servers are kept out', () => {
    expect(allowedDomainsOf([], 'wa.example.org')).toEqual(['example.org']);
    expect(allowedDomainsOf([], 'wa.localhost')).toEqual(['localhost']);
  });

  it('takes the configured domains as given (case-insensitive), and "*" for anyone', () => {
    expect(allowedDomainsOf(['Example.ORG', 'other.net'], 'wa.example.org')).toEqual([
      'example.org',
      'other.net',
    ]);
    expect(allowedDomainsOf(['*'], 'wa.example.org')).toEqual(['*']);
  });

  it('lets anyone in for a one-label component domain, which has no parent to default to', () => {
    expect(allowedDomainsOf([], 'gateway')).toEqual(['*']);
  });
});
