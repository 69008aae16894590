import { readFileSync } from 'node:fs';
import { encodeCertChain, issueIntermediate, issueLeaf } from '../../src/protocol/cert-chain.js';
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

/** The hex bytes at the start of each line of a fenced block; what follows is annotation. */
function documentedHex(block: string): string {
  return block
    .split('\n')
    .map((line) => {
      const bytes: string[] = [];
      for (const token of line.trim().split(/\s+/)) {
        if (!/^(?:[0-9a-f]{2})+$/.test(token)) break;
        bytes.push(token);
      }
      return bytes.join('');
    })
    .join('');
}

describe('docs/PROTOCOL.md certificate example', () => {
  it('is the chain the code issues from the documented seeds', () => {
    const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
    const intermediate = issueIntermediate({
      rootPrivateKey: new Uint8Array(32).fill(1),
      serial: 1,
      key: hex('8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394'),
      notBefore: 1767225600,
      notAfter: 1830297600,
    });
    const leaf = issueLeaf({
      intermediatePrivateKey: new Uint8Array(32).fill(2),
      serial: 1001,
      issuerSerial: 1,
      key: hex('5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22'),
      notBefore: 1767225600,
      notAfter: 1798761600,
    });
    const block = /```\n(0a 77[\s\S]*?)```/.exec(doc);
    expect(block).not.toBeNull();
    expect(documentedHex(block![1]!)).toBe(
      Buffer.from(encodeCertChain({ leaf, intermediate })).toString('hex'),
    );
  });
});
