/**
 * Types for the part of @xmpp/client 0.14 the tests use (test clients acting as users of
 * Conversations and co.). The package ships no declarations.
 */
declare module '@xmpp/client' {
  import type { Element } from '@xmpp/xml';

  export interface ClientOptions {
    service: string;
    domain: string;
    username: string;
    password: string;
    resource?: string;
  }

  export interface Client {
    status: string;
    jid: { toString(): string; bare(): { toString(): string } } | null;
    reconnect: { stop(): void };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
    on(event: 'stanza', listener: (element: Element) => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    on(event: 'online' | 'offline', listener: () => void): this;
  }

  export function client(options: ClientOptions): Client;
  export { xml } from '@xmpp/xml';
}

/** The TLS socket wrapper @xmpp/client uses for direct TLS and STARTTLS (demo/tls.ts pins it). */
declare module '@xmpp/tls/lib/Socket.js' {
  const Socket: { prototype: object };
  export default Socket;
}
