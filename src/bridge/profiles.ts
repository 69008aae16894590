/**
 * Contacts' profiles (docs/PROTOCOL.md 5.8): push name, about text and picture, as the gateway
 * announces them, handed to an adapter that shows them (`ProfileAdapter`: a ghost's name and avatar,
 * a roster name, vCard and avatar). The profile of a contact is read once, when the puppet first
 * hears from it in this run; then every change the gateway announces (a push name on a message that
 * differs, a profile or picture notification) is read and shown again. What was shown is kept in
 * memory only: after a restart the next message of each contact shows it once more (adapters make
 * an unchanged profile a no-op).
 */
import type {
  PictureNotificationStanza,
  ProfileEntry,
  ProfileNotificationStanza,
} from '../protocol/stanza/index.js';
import { isProfileAdapter } from './adapter.js';
import type { PuppetContext } from './context.js';
import type { ContactProfile } from './events.js';
import { isGroupJid } from './groups.js';
import { LazyMap } from '../util/lazy-map.js';

/** The largest picture the gateway serves (PROTOCOL.md 5.8.2): 256 KiB. */
const MAX_PICTURE_BYTES = 262_144;

interface Known {
  name?: string | undefined;
  about?: string | undefined;
  pictureId?: string | undefined;
}

export class PuppetProfiles {
  /** What was shown of each contact in this run. */
  private readonly known = new LazyMap<string, Known>();
  /** Contacts whose profile is being read (one read at a time each). */
  private readonly reading = new LazyMap<string, Promise<void>>();

  constructor(
    private readonly ctx: PuppetContext,
    private readonly mediaConn: () => Promise<{ auth: string }>,
  ) {}

  /**
   * A message from `remote` carried `notify` (its push name): the first message in this run reads
   * the whole profile; a later one with another name shows the new name.
   */
  heardFrom(remote: string, notify: string | undefined): void {
    if (!this.shows() || isGroupJid(remote) || remote === this.ctx.accountJid) return;
    const known = this.known.get(remote);
    if (known !== undefined && (notify === undefined || notify === known.name)) return;
    // Read once for a burst of messages: what is being read counts as known (with this name).
    this.known.set(remote, { ...known, name: notify });
    this.refresh(remote);
  }

  /** A profile or picture notification: the changed profile is read and shown. */
  onNotification(n: ProfileNotificationStanza | PictureNotificationStanza): void {
    if (n.type === 'picture' && isGroupJid(n.from)) {
      this.groupPicture(n.from, n.body.event === 'picture_set' ? n.body.id : undefined);
      return;
    }
    if (!this.shows() || isGroupJid(n.from)) return;
    this.refresh(n.from);
  }

  /**
   * A group's picture (its id; undefined: none), shown as the group's (`updateProfile` with the
   * group as `remote` and only `picture`): when the puppet first meets the group and at each change.
   */
  groupPicture(group: string, pictureId: string | undefined): void {
    if (!this.shows() || (this.known.has(group) && this.known.get(group)?.pictureId === pictureId)) return;
    this.known.set(group, { pictureId });
    this.refresh(group, async () => {
      const adapter = this.ctx.adapter();
      if (!adapter || !isProfileAdapter(adapter) || !this.ctx.connection.isConnected) return;
      const picture = pictureId === undefined ? undefined : { id: pictureId, ...(await this.picture(group)) };
      await adapter.updateProfile(this.ctx.puppet.localId, {
        remote: group,
        ...(picture ? { picture } : {}),
      });
    });
  }

  private shows(): boolean {
    const adapter = this.ctx.adapter();
    return adapter !== undefined && isProfileAdapter(adapter);
  }

  /** Reads the contact's profile (and picture, when it changed) and shows it; failures are logged. */
  private refresh(remote: string, read = () => this.read(remote)): void {
    const previous = this.reading.get(remote) ?? Promise.resolve();
    const next = previous
      .then(read)
      .catch((err: unknown) =>
        this.ctx.log?.info({ contact: remote, err: (err as Error).message }, 'contact profile not shown'),
      )
      .finally(() => {
        if (this.reading.get(remote) === next) this.reading.delete(remote);
      });
    this.reading.set(remote, next);
  }

  private async read(remote: string): Promise<void> {
    const adapter = this.ctx.adapter();
    if (!adapter || !isProfileAdapter(adapter) || !this.ctx.connection.isConnected) return;
    const answer = await this.ctx.connection.request({ op: 'profile_get', jids: [remote] });
    const entry: ProfileEntry | undefined =
      answer.body.op === 'profile_result' ? answer.body.users.find((u) => u.jid === remote) : undefined;
    if (!entry || entry.error) return;
    const before = this.known.get(remote);
    const profile: ContactProfile = {
      remote,
      ...(entry.name ? { name: entry.name } : {}),
      ...(entry.status ? { about: entry.status } : {}),
      ...(entry.pictureId
        ? {
            picture:
              before?.pictureId === entry.pictureId
                ? { id: entry.pictureId }
                : { id: entry.pictureId, ...(await this.picture(remote)) },
          }
        : {}),
    };
    await adapter.updateProfile(this.ctx.puppet.localId, profile);
    this.known.set(remote, { name: entry.name, about: entry.status, pictureId: entry.pictureId });
  }

  /** Downloads the contact's current picture from the media host (with the puppet's media auth). */
  private async picture(remote: string): Promise<{ bytes?: Uint8Array; mimetype?: string }> {
    const answer = await this.ctx.connection.request({ op: 'picture_get', target: remote });
    if (answer.body.op !== 'picture_result') return {};
    const { auth } = await this.mediaConn();
    const res = await fetch(answer.body.url, {
      headers: { authorization: `Bearer ${auth}` },
      signal: AbortSignal.timeout(15_000),
    });
    if (res.status !== 200) throw new Error(`the picture could not be downloaded: HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > MAX_PICTURE_BYTES)
      throw new Error(`the picture is larger than ${MAX_PICTURE_BYTES} bytes`);
    return { bytes, mimetype: res.headers.get('content-type') ?? 'image/jpeg' };
  }
}
