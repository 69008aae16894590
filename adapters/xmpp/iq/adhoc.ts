/**
 * Ad-hoc commands (XEP-0050): register, unregister and status as single-stage commands that
 * complete at once with a note; the work is commands.ts's, in order with the user's other stanzas.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import { COMMANDS, runCommand, type CommandContext } from '../commands.js';
import type { Access, UserChain } from '../context.js';
import { bareJid } from '../jids.js';
import { derivedId, NS, stanzaError, xmlSafe } from '../stanzas.js';

export interface AdhocContext {
  readonly access: Access;
  readonly chain: UserChain;
  readonly commands: CommandContext;
}

export class AdhocCommands {
  constructor(private readonly ctx: AdhocContext) {}

  async execute({ stanza, element }: IqContext): Promise<Element> {
    const { access } = this.ctx;
    const user = bareJid(stanza.attrs.from ?? '');
    const node = element.attrs.node ?? '';
    if (!access.mayUse(user)) return stanzaError('auth', 'forbidden', access.notAllowed(user).message);
    const command = COMMANDS.find((c) => c.adhoc && c.node === node);
    if (!command) return stanzaError('cancel', 'item-not-found', `There is no command "${node}".`);
    if (element.attrs.action === 'cancel') {
      return xml('command', {
        xmlns: NS.commands,
        node,
        sessionid: element.attrs.sessionid,
        status: 'canceled',
      });
    }
    const reply = await this.ctx.chain.run(user, () => runCommand(this.ctx.commands, user, command.name, []));
    return xml(
      'command',
      {
        xmlns: NS.commands,
        node,
        sessionid: element.attrs.sessionid ?? derivedId('s', user, node, String(Date.now())),
        status: 'completed',
      },
      xml('note', { type: reply.error ? 'error' : 'info' }, xmlSafe(reply.text)),
    );
  }
}
