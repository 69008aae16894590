import { existsSync } from 'node:fs';
import path from 'node:path';
import { SchemaValidator, type SchemaProblem } from './json-schema.js';
import { isObject, type SpecFiles } from './spec-files.js';

/**
 * Events checked against the spec's event schemas: the client event format for every event, then
 * the schema of its type (for `m.room.message`, of its `msgtype`, falling back to the generic message
 * schema for msgtypes the spec does not define). Types the spec does not define (`m.bridge`,
 * `fi.mau.*`) are opaque: only the envelope is checked.
 */
export class EventSchemas {
  private readonly validator: SchemaValidator;

  constructor(private readonly files: SpecFiles) {
    this.validator = new SchemaValidator(files);
  }

  /** The schema file for an event, relative to data/, or undefined for a type the spec does not define. */
  schemaFileFor(type: string, content: unknown): string | undefined {
    const dir = 'event-schemas/schema';
    if (type === 'm.room.message' && isObject(content) && typeof content['msgtype'] === 'string') {
      const specific = `${dir}/m.room.message$${content['msgtype']}.yaml`;
      if (this.exists(specific)) return specific;
    }
    const file = `${dir}/${type}.yaml`;
    return /^[\w.]+$/.test(type) && this.exists(file) ? file : undefined;
  }

  /** A room event as the client-server API and appservice transactions carry it. */
  validateRoomEvent(event: unknown, at = 'event'): SchemaProblem[] {
    const problems = this.validator.validate(
      this.files.node('api/client-server/definitions/client_event.yaml'),
      event,
      at,
    );
    return [...problems, ...this.validateTyped(event, at)];
  }

  /** An ephemeral event (m.typing, m.receipt, m.presence) as an appservice transaction carries it. */
  validateEphemeral(event: unknown, at = 'ephemeral'): SchemaProblem[] {
    const problems = this.validator.validate(
      this.files.node('event-schemas/schema/core-event-schema/event.yaml'),
      event,
      at,
    );
    return [...problems, ...this.validateTyped(event, at)];
  }

  private validateTyped(event: unknown, at: string): SchemaProblem[] {
    if (!isObject(event) || typeof event['type'] !== 'string') return [];
    const file = this.schemaFileFor(event['type'], event['content']);
    return file === undefined ? [] : this.validator.validate(this.files.node(file), event, at);
  }

  private readonly known = new Map<string, boolean>();
  private exists(file: string): boolean {
    let e = this.known.get(file);
    if (e === undefined) {
      e = existsSync(path.join(this.files.root, file));
      this.known.set(file, e);
    }
    return e;
  }
}
