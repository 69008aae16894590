import { encodeHandshake, splitNoiseMessage } from '../../src/protocol/handshake/messages.js';
import { HandshakeState, keyPairFromPrivateKey, XX_PROTOCOL } from '../../src/protocol/noise/index.js';
import { decodeStanza, encodeStanza, serializeXml } from '../../src/protocol/stanza/index.js';
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

  describe.each([
    ['5.7 Groups', '### 5.7 Groups', '### 5.8 Profiles'],
    ['5.8 Profiles', '### 5.8 Profiles', '## 6. '],
  ])('section %s', (_name, start, end) => {
    const examples = xmlExamples(section(doc, start, end));

    it('has examples', () => {
      expect(examples.length).toBeGreaterThan(10);
    });

    it.each(examples)('shows %s exactly as the codec writes it', (stanza) => {
      expect(serializeXml(encodeStanza(decodeStanza(new TextEncoder().encode(stanza))))).toBe(stanza);
    });
  });
});

/** The text of the document from the heading `start` to the heading `end`. */
function section(doc: string, start: string, end: string): string {
  const from = doc.indexOf(`\n${start}`);
  const to = doc.indexOf(`\n${end}`, from + 1);
  if (from === -1 || to === -1) throw new Error(`no section between "${start}" and "${end}"`);
  return doc.slice(from, to);
}

/** The stanzas of the section's xml blocks: each starts a line with "<"; other lines continue it. */
function xmlExamples(text: string): string[] {
  const stanzas: string[] = [];
  for (const block of text.matchAll(/```xml\n([\s\S]*?)```/g)) {
    for (const line of (block[1] as string).split('\n')) {
      if (line === '') continue;
      if (line.startsWith('<')) stanzas.push(line);
      else stanzas[stanzas.length - 1] += `\n${line}`;
    }
  }
  return stanzas;
}
