import { encodeHandshake, splitNoiseMessage } from '../../src/protocol/handshake/messages.js';
import { HandshakeState, keyPairFromPrivateKey, XX_PROTOCOL } from '../../src/protocol/noise/index.js';
import { encodeFrame, PREFACE } from '../../src/protocol/transport/index.js';
import { documentedHex, protocolDoc } from '../support/doc.js';

const doc = protocolDoc();

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
    const documented = documentedHex(doc, '00 00 24');
    expect(documented).toBe(frame.toString('hex'));
  });
});
