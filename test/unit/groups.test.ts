/**
 * The core's group state: how an announced change moves a group's state forward, what the adapter
 * is told about its members, and the puppet's sender-key distribution per group.
 */
import { applyGroupEvent, distributionIdOf, isGroupJid, snapshotOf } from '../../src/bridge/groups.js';
import type { GroupInfo, GroupNotificationStanza } from '../../src/protocol/stanza/index.js';

const GROUP = '120363001@g.wa.interop';
const ALICE = 'alice@matrixbridge.interop';
const BOB = '4915112345678@wa.interop';
const CAROL = '4915122223333@wa.interop';

const info: GroupInfo = {
  jid: GROUP,
  subject: 'Lunch',
  creator: BOB,
  creation: 1767225600,
  version: 1,
  announce: false,
  locked: false,
  participants: [
    { jid: BOB, admin: true },
    { jid: ALICE, admin: false },
  ],
};

const notification = (version: number, body: GroupNotificationStanza['body']): GroupNotificationStanza => ({
  kind: 'notification',
  id: `n${version}`,
  from: GROUP,
  participant: BOB,
  t: 1767225600 + version,
  version,
  type: 'w:gp2',
  body,
});

describe('group state from the gateway’s notifications', () => {
  it('adds, promotes, demotes and removes members, each change raising the version', () => {
    let g = applyGroupEvent(
      info,
      notification(2, { event: 'participants_changed', action: 'add', participants: [CAROL] }),
    );
    expect(g.participants.map((p) => p.jid)).toEqual([BOB, ALICE, CAROL]);
    expect(g.version).toBe(2);
    g = applyGroupEvent(
      g,
      notification(3, { event: 'participants_changed', action: 'promote', participants: [ALICE] }),
    );
    expect(g.participants.find((p) => p.jid === ALICE)?.admin).toBe(true);
    g = applyGroupEvent(
      g,
      notification(4, { event: 'participants_changed', action: 'demote', participants: [ALICE] }),
    );
    expect(g.participants.find((p) => p.jid === ALICE)?.admin).toBe(false);
    g = applyGroupEvent(
      g,
      notification(5, { event: 'participants_changed', action: 'remove', participants: [BOB] }),
    );
    expect(g.participants.map((p) => p.jid)).toEqual([ALICE, CAROL]);
    expect(g.version).toBe(5);
  });

  it('takes a subject, a description (and its deletion) and the settings', () => {
    let g = applyGroupEvent(info, notification(2, { event: 'subject_changed', subject: 'Dinner' }));
    g = applyGroupEvent(
      g,
      notification(3, { event: 'description_changed', id: 'd1', description: 'Fridays' }),
    );
    expect(g).toMatchObject({ subject: 'Dinner', description: { id: 'd1', text: 'Fridays' } });
    g = applyGroupEvent(g, notification(4, { event: 'description_changed', id: 'd2' }));
    expect(g.description).toBeUndefined();
    g = applyGroupEvent(g, notification(5, { event: 'setting_changed', setting: 'announcement' }));
    g = applyGroupEvent(g, notification(6, { event: 'setting_changed', setting: 'locked' }));
    expect(g).toMatchObject({ announce: true, locked: true, version: 6 });
    g = applyGroupEvent(g, notification(7, { event: 'setting_changed', setting: 'unlocked' }));
    expect(g.locked).toBe(false);
  });

  it('tells the adapter each member with their number, role, and which one is the local user', () => {
    expect(snapshotOf(info, ALICE)).toEqual({
      group: GROUP,
      subject: 'Lunch',
      announce: false,
      locked: false,
      version: 1,
      members: [
        { remote: BOB, phone: '+4915112345678', admin: true },
        { remote: ALICE, admin: false, self: true },
      ],
    });
  });
});

describe('the puppet’s sender key per group', () => {
  it('has one distribution per group, a UUID that stays the same across restarts', () => {
    const id = distributionIdOf(GROUP);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(distributionIdOf(GROUP)).toBe(id);
    expect(distributionIdOf('120363002@g.wa.interop')).not.toBe(id);
  });

  it('tells group JIDs from users', () => {
    expect(isGroupJid(GROUP)).toBe(true);
    expect(isGroupJid(BOB)).toBe(false);
    expect(isGroupJid('g.wa.interop')).toBe(false);
  });
});
