import type { Adapter } from '../../src/bridge/adapter.js';

/** An adapter that shows nothing: the scale benchmark measures connections only. */
export const noopAdapter: Adapter = {
  network: 'matrix',
  capabilities: {
    media: false,
    locations: false,
    replies: false,
    edits: false,
    deletes: false,
    reactions: false,
    readReceipts: false,
    typing: false,
    presence: false,
    maxMediaBytes: 0,
  },
  attach: () => undefined,
  start: () => Promise.resolve(),
  stop: () => Promise.resolve(),
  deliver: () => Promise.resolve(undefined),
  showEphemeral: () => undefined,
  updateDelivery: () => undefined,
  notify: () => undefined,
};
