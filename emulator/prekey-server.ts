/**
 * The prekey server (`<iq xmlns="encrypt">`): devices publish their identity key, registration id,
 * signed prekey and one-time prekeys; others fetch bundles, each one-time prekey handed out once.
 * A device whose stock falls below the low-water mark is told to upload more; when a device comes
 * back with a different identity key, everyone who fetched its keys or exchanged messages with the
 * account is told.
 */
import { formatJid, parseJid, type IqBody, type PreKeyFetchEntry } from '../src/protocol/stanza/index.js';
import type { Connection, Core } from './core.js';
import { GATEWAY_JID, notify } from './relay.js';

type Upload = Extract<IqBody, { op: 'prekey_upload' }>;

/** The JID contacts see in an identity notification: the user, with `:device` unless it is the primary. */
function subjectJid(accountJid: string, device: number): string {
  if (device === 0) return accountJid;
  const { user, server } = parseJid(accountJid);
  return formatJid({ user, device, server });
}

export function uploadKeys(core: Core, c: Connection, body: Upload): IqBody {
  const have = core.store.preKeyCount(c.accountJid, c.device);
  if (have + body.preKeys.length > core.settings.maxPreKeysPerDevice) {
    return {
      op: 'error',
      error: {
        code: 406,
        text: `too many one-time prekeys: the server holds ${have} for this device and keeps at most ${core.settings.maxPreKeysPerDevice}`,
      },
    };
  }
  const { identityChanged } = core.store.uploadKeys(
    c.accountJid,
    c.device,
    {
      registrationId: body.registrationId,
      identityKey: body.identityKey,
      signedPreKey: body.signedPreKey,
      preKeys: body.preKeys,
    },
    core.now(),
  );
  if (identityChanged) {
    const from = subjectJid(c.accountJid, c.device);
    const watchers = core.store.watchers(c.accountJid);
    core.log.info(
      { account: c.accountJid, device: c.device, watchers: watchers.length },
      'identity key changed',
    );
    for (const w of watchers) notify(core, w, from, { event: 'identity_changed' });
  }
  return { op: 'result' };
}

export function countKeys(core: Core, c: Connection): IqBody {
  return { op: 'prekey_count_result', count: core.store.preKeyCount(c.accountJid, c.device) };
}

export function fetchBundles(core: Core, c: Connection, jids: readonly string[]): IqBody {
  const users = jids.map((jid): PreKeyFetchEntry => {
    let user: string | undefined;
    let server: string;
    let device: number;
    try {
      const parsed = parseJid(jid);
      user = parsed.user;
      server = parsed.server;
      device = parsed.device ?? 0;
    } catch (err) {
      return { jid, error: { code: 400, text: (err as Error).message } };
    }
    if (user === undefined) return { jid, error: { code: 400, text: 'a device JID is needed' } };
    const accountJid = formatJid({ user, server });
    if (!core.store.account(accountJid)) return { jid, error: { code: 404, text: 'no such user' } };
    const taken = core.store.takeBundle(accountJid, device);
    if (!taken) return { jid, error: { code: 404, text: 'no keys for this device' } };
    core.store.addContact(accountJid, c.accountJid);
    const lowWater = core.settings.prekeyLowWater;
    const before = taken.remaining + (taken.bundle.preKey ? 1 : 0);
    // Told once when the stock crosses the mark, and again when it runs out.
    if (taken.bundle.preKey && taken.remaining < lowWater && (before >= lowWater || taken.remaining === 0)) {
      notify(core, accountJid, GATEWAY_JID, { event: 'prekey_low', count: taken.remaining }, [device]);
    }
    return { jid, ...taken.bundle };
  });
  return { op: 'prekey_fetch_result', users };
}
