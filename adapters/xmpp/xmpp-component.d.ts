/**
 * Types for the part of @xmpp/component 0.13 the component link uses. The package ships no
 * declarations; this covers only what is called, so a wrong use fails the type check. Its `xml`
 * is @xmpp/xml 0.13, built on the same ltx copy as @xmpp/xml 0.14 (src/protocol/stanza/xmpp-xml.d.ts),
 * so elements from either builder are interchangeable (`instanceof` holds).
 */
declare module '@xmpp/component' {
  import type { Socket } from 'node:net';
  import type { Element } from '@xmpp/xml';

  export interface ComponentOptions {
    /** `xmpp://host:port` of the server's component listener. */
    service: string;
    domain: string;
    password: string;
  }

  /** An XMPP error (stream or stanza) as @xmpp/error builds it. */
  export interface XMPPError extends Error {
    condition: string;
    text?: string;
  }

  export interface IqContext {
    stanza: Element;
    element: Element;
  }

  export type IqHandler = (
    ctx: IqContext,
  ) => Element | boolean | undefined | Promise<Element | boolean | undefined>;

  export interface IqCallee {
    get(xmlns: string, name: string, handler: IqHandler): void;
    set(xmlns: string, name: string, handler: IqHandler): void;
  }

  export interface Reconnect {
    stop(): void;
  }

  export interface Component {
    status: string;
    socket: Socket | null;
    options: ComponentOptions;
    reconnect: Reconnect;
    iqCallee: IqCallee;
    connect(service: string): Promise<void>;
    open(options: { domain: string }): Promise<Element>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
    on(event: 'stanza' | 'element', listener: (element: Element) => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    on(event: 'status', listener: (status: string) => void): this;
    once(event: 'disconnect' | 'online', listener: () => void): this;
    removeListener(event: string, listener: (...args: never[]) => void): this;
    removeAllListeners(): this;
  }

  export function component(options: ComponentOptions): Component;
}
