import type { AdapterCapabilities } from '../../src/bridge/adapter.js';
import type { ConversationEvent, MediaBody } from '../../src/bridge/events.js';
import {
  cardsText,
  fitToCapabilities,
  humanSize,
  mediaUnshowable,
  readVCard,
  showsDelivery,
  showsEphemeral,
} from '../../src/bridge/fallbacks.js';
import { geoUri, parseGeoUri } from '../../src/bridge/geo.js';
import { SHOWS_EVERYTHING } from '../support/test-adapter.js';

const ALL: AdapterCapabilities = { ...SHOWS_EVERYTHING, maxMediaBytes: 10 * 1024 * 1024 };
const lacking = (lacks: Partial<AdapterCapabilities>): AdapterCapabilities => ({ ...ALL, ...lacks });

const photo: MediaBody = {
  kind: 'media',
  media: 'image',
  path: '/tmp/x.jpg',
  mimetype: 'image/jpeg',
  size: 2 * 1024 * 1024,
  caption: 'the view',
};
const reply = { id: 'W1', localId: '$e1' };
const line = (text: string, replyTo?: typeof reply): ConversationEvent => ({
  type: 'message',
  body: { kind: 'text', text },
  ...(replyTo ? { replyTo } : {}),
});

describe('fitToCapabilities: what a network lacks becomes readable text', () => {
  const edit: ConversationEvent = {
    type: 'edit',
    target: 'W1',
    targetLocalId: '$e1',
    body: { kind: 'text', text: 'at 1' },
  };
  const del: ConversationEvent = { type: 'delete', target: 'W1', targetLocalId: '$e1' };
  const react: ConversationEvent = { type: 'reaction', target: 'W1', targetLocalId: '$e1', emoji: '🎉' };

  it('passes every event unchanged to a network that shows everything', () => {
    for (const e of [
      edit,
      del,
      react,
      line('hi', reply),
      { type: 'message', body: photo } as ConversationEvent,
    ]) {
      expect(fitToCapabilities(e, ALL)).toBe(e);
    }
  });

  it('edits: a new message "✎ text" replying to the edited one', () => {
    expect(fitToCapabilities(edit, lacking({ edits: false }))).toEqual(line('✎ at 1', reply));
  });

  it('deletes: a notice replying to the deleted message', () => {
    expect(fitToCapabilities(del, lacking({ deletes: false }))).toEqual(line('(deleted a message)', reply));
  });

  it('reactions: a line with the emoji, or that it was taken back', () => {
    expect(fitToCapabilities(react, lacking({ reactions: false }))).toEqual(line('(reacted 🎉)', reply));
    expect(fitToCapabilities({ ...react, emoji: '' }, lacking({ reactions: false }))).toEqual(
      line('(took back a reaction)', reply),
    );
  });

  it('replies: the text arrives without the link, and fallbacks do not link either', () => {
    expect(fitToCapabilities(line('yes', reply), lacking({ replies: false }))).toEqual(line('yes'));
    expect(fitToCapabilities(edit, lacking({ replies: false, edits: false }))).toEqual(line('✎ at 1'));
  });

  it('media: a notice naming the kind, size and caption instead of the file', () => {
    expect(
      fitToCapabilities({ type: 'message', body: photo, replyTo: reply }, lacking({ media: false })),
    ).toEqual(line('(sent an image (2 MB), which this chat cannot show: the view)', reply));
  });

  it('maxMediaBytes: a larger file becomes a notice with the limit; a file at the limit passes', () => {
    expect(
      fitToCapabilities({ type: 'message', body: photo }, lacking({ maxMediaBytes: 1024 * 1024 })),
    ).toEqual(line('(sent an image (2 MB), larger than this chat takes (1 MB): the view)'));
    const atLimit = { type: 'message', body: { ...photo, size: 1024 * 1024 } } as ConversationEvent;
    expect(fitToCapabilities(atLimit, lacking({ maxMediaBytes: 1024 * 1024 }))).toBe(atLimit);
  });

  it('names a file by its name when it has one', () => {
    const doc: MediaBody = {
      ...photo,
      media: 'file',
      fileName: 'minutes.pdf',
      size: 1500,
      caption: undefined,
    };
    expect(fitToCapabilities({ type: 'message', body: doc }, lacking({ media: false }))).toEqual(
      line('(sent a file "minutes.pdf" (1.5 KB), which this chat cannot show)'),
    );
  });
});

describe('status signals a network lacks are not sent', () => {
  it('read receipts: failures and sent are shown, delivered and read ticks only with read receipts', () => {
    const none = lacking({ readReceipts: false });
    expect(['queued', 'sent', 'failed'].every((s) => showsDelivery(none, s as 'sent'))).toBe(true);
    expect(showsDelivery(none, 'delivered')).toBe(false);
    expect(showsDelivery(none, 'read')).toBe(false);
    expect(showsDelivery(ALL, 'read')).toBe(true);
  });

  it('typing and presence, each on its own flag', () => {
    const typing = { type: 'typing', typing: true } as const;
    const presence = { type: 'presence', available: true } as const;
    expect(showsEphemeral(lacking({ typing: false }), typing)).toBe(false);
    expect(showsEphemeral(lacking({ typing: false }), presence)).toBe(true);
    expect(showsEphemeral(lacking({ presence: false }), presence)).toBe(false);
    expect(showsEphemeral(lacking({ presence: false }), typing)).toBe(true);
  });

  it('an incoming file is not downloaded when the network cannot take it', () => {
    expect(mediaUnshowable(lacking({ media: false }), 10)).toBe('which this chat cannot show');
    expect(mediaUnshowable(lacking({ maxMediaBytes: 100 }), 101)).toBe(
      'larger than this chat takes (100 bytes)',
    );
    expect(mediaUnshowable(lacking({ maxMediaBytes: 100 }), undefined)).toBeUndefined();
    expect(mediaUnshowable(ALL, 100)).toBeUndefined();
  });

  it('sizes read as a person would write them', () => {
    expect([humanSize(512), humanSize(1536), humanSize(3 * 1024 * 1024)]).toEqual([
      '512 bytes',
      '1.5 KB',
      '3 MB',
    ]);
  });
});

describe('locations and contact cards as text', () => {
  const place = {
    kind: 'location' as const,
    latitude: 52.5163,
    longitude: 13.3777,
    name: 'Brandenburger Tor',
    address: 'Pariser Platz',
  };

  it('shows a location as its name, address and geo: URI where the network has no map', () => {
    const e: ConversationEvent = { type: 'message', body: place };
    expect(fitToCapabilities(e, lacking({ locations: false }))).toEqual({
      type: 'message',
      body: { kind: 'text', text: '📍 Brandenburger Tor, Pariser Platz: geo:52.5163,13.3777' },
    });
    expect(fitToCapabilities(e, ALL)).toEqual(e);
  });

  it('reads geo: URIs as clients write them, and nothing else', () => {
    expect(parseGeoUri('geo:52.5163,13.3777')).toEqual({ latitude: 52.5163, longitude: 13.3777 });
    expect(parseGeoUri(' geo:-33.8,151.2,10;u=35 ')).toEqual({ latitude: -33.8, longitude: 151.2 });
    expect(parseGeoUri('geo:91,0')).toBeUndefined();
    expect(parseGeoUri('meet me at geo:1,2')).toBeUndefined();
    expect(parseGeoUri('geo:1,2\nsee you')).toBeUndefined();
    expect(geoUri(place)).toBe('geo:52.5163,13.3777');
  });

  it('reads the name, numbers and addresses of a vCard, folded lines and escapes included', () => {
    const vcard = [
      'BEGIN:VCARD',
      'VERSION:3.0',
      'FN:Doe\\, Jane',
      'item1.TEL;type=CELL;waid=4915112345678:+49 151 1234',
      ' 5678',
      'EMAIL;type=INTERNET:jane@example.org',
      'END:VCARD',
    ].join('\r\n');
    expect(readVCard(vcard)).toEqual({
      name: 'Doe, Jane',
      phones: ['+49 151 12345678'],
      emails: ['jane@example.org'],
    });
    expect(cardsText([{ displayName: 'Jane', vcard }, { displayName: '', vcard: 'FN:Joe' }])).toBe(
      '👤 Jane: +49 151 12345678, jane@example.org\n👤 Joe',
    );
  });
});
