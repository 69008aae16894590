import { readFileSync } from 'node:fs';
import { encodeHandshake, splitNoiseMessage } from '../../src/protocol/handshake/messages.js';
import { HandshakeState, keyPairFromPrivateKey, XX_PROTOCOL } from '../../src/protocol/noise/index.js';
import { encodeFrame, PREFACE } from '../../src/protocol/transport/index.js';

const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');

describe('docs/PROTOCOL.md', () => {
  it('shows the first handshake frame exactly as the code builds it', () => {
    const hs = HandshakeState.initialize({
      protocol: XX_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: keyPairFromPrivateKey(Buffer.alloc(32, 0x11)),
      e: keyPairFromPrivateKey(Buffer.alloc(32, 0x22)),
    });
    const frame = encodeFrame(
      encodeHandshake('client_hello', splitNoiseMessage(hs.writeMessage(), true, false)),
    );
    const block = /```\n(00 00 24[\s\S]*?)```/.exec(doc);
    expect(block).not.toBeNull();
    // Each line starts with hex bytes; what follows two spaces is annotation.
    const documented = block![1]!
      .split('\n')
      .map((line) => /^\s*((?:[0-9a-f]{2}(?: |$))+)/.exec(line)?.[1] ?? '')
      .join('')
      .replace(/ /g, '');
    expect(documented).toBe(frame.toString('hex'));
  });
});
