/**
 * Types for the part of @xmpp/xml 0.14 (ltx 3) the stanza codec uses. The package ships no
 * declarations; this covers only what is called, so a wrong use fails the type check.
 */
declare module '@xmpp/xml' {
  export type Node = Element | string;

  export class Element {
    constructor(name: string, attrs?: Record<string, string>);
    name: string;
    attrs: Record<string, string | undefined>;
    children: Node[];
    parent: Element | null;
    getName(): string;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getText(): string;
    append(...nodes: Node[]): void;
    t(text: string): this;
    toString(): string;
  }

  type Child = Element | string | null | undefined | false | readonly Child[];

  /** Builds an element; null/undefined attributes are dropped, empty-string children skipped. */
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: Child[]
  ): Element;
  export default xml;

  /** ltx's SAX parser wrapped into a tree builder (non-validating; see codec.ts). */
  export class Parser {
    constructor();
    on(event: 'start' | 'element' | 'end', listener: (el: Element) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    write(data: string): void;
    end(data?: string): void;
  }
}
