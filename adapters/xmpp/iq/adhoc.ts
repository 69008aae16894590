/**
 * Ad-hoc commands (XEP-0050): register, unregister and status as single-stage commands that
 * complete at once with a note; the work is commands.ts's, in order with the user's other stanzas.
 * For `xmpp.admins`, the admin commands too: `admin-puppets` completes at once, the others first
 * answer a data form (XEP-0004) asking for the user or the text, and complete when it is submitted.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import { runAdminCommand } from '../../../src/bridge/commands.js';
import {
  ADMIN_ADHOC,
  COMMANDS,
  NOT_ADMIN,
  runCommand,
  type AdminAdhoc,
  type CommandContext,
} from '../commands.js';
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
    const admin = ADMIN_ADHOC.find((c) => c.node === node);
    const command = COMMANDS.find((c) => c.adhoc && c.node === node);
    if (!command && !admin) return stanzaError('cancel', 'item-not-found', `There is no command "${node}".`);
    const sessionid = element.attrs.sessionid ?? derivedId('s', user, node, String(Date.now()));
    if (element.attrs.action === 'cancel') {
      return xml('command', { xmlns: NS.commands, node, sessionid, status: 'canceled' });
    }
    if (admin) {
      if (!access.isAdmin(user)) return stanzaError('auth', 'forbidden', NOT_ADMIN);
      return this.admin(admin, element, sessionid);
    }
    const reply = await this.ctx.chain.run(user, () =>
      runCommand(this.ctx.commands, user, (command as { name: string }).name, []),
    );
    return completed(node, sessionid, reply.text, reply.error === true);
  }

  /** An admin command: its form first (when it takes an argument), then the work. */
  private async admin(c: AdminAdhoc, element: Element, sessionid: string): Promise<Element> {
    let arg = '';
    if (c.field) {
      const form = element.getChild('x', NS.dataForms);
      if (form?.attrs.type !== 'submit') {
        return xml(
          'command',
          { xmlns: NS.commands, node: c.node, sessionid, status: 'executing' },
          xml('actions', { execute: 'complete' }, xml('complete')),
          xml(
            'x',
            { xmlns: NS.dataForms, type: 'form' },
            xml('title', {}, c.title),
            xml('field', { var: c.field.var, type: c.field.type, label: c.field.label }, xml('required')),
          ),
        );
      }
      const field = form.getChildren('field').find((f) => f.attrs.var === c.field?.var);
      arg = (field?.getChildren('value') ?? [])
        .map((v) => v.getText())
        .join('\n')
        .trim();
      if (arg === '') {
        return stanzaError('modify', 'bad-request', `The form's "${c.field.var}" field is empty.`);
      }
    }
    const reply = await runAdminCommand(this.ctx.commands.core, `${c.sub} ${arg}`);
    return completed(c.node, sessionid, reply.text, reply.error === true);
  }
}

function completed(node: string, sessionid: string, text: string, error: boolean): Element {
  return xml(
    'command',
    { xmlns: NS.commands, node, sessionid, status: 'completed' },
    xml('note', { type: error ? 'error' : 'info' }, xmlSafe(text)),
  );
}
