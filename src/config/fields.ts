import { z } from 'zod';

/**
 * Schema building blocks shared by the bridge's and the emulator's configuration. Every leaf
 * carries the phrase that completes "expected ...", so a loader can turn any mistake into
 * "key: expected <phrase>, found <value>".
 */
export const expecting = (phrase: string) => ({ error: () => phrase });

export const str = (phrase = 'a non-empty string') => z.string(expecting(phrase)).min(1, expecting(phrase));
export const int = (min: number, max: number, phrase = `an integer from ${min} to ${max}`) =>
  z.number(expecting(phrase)).int(expecting(phrase)).min(min, expecting(phrase)).max(max, expecting(phrase));
export const bool = () => z.boolean(expecting('true or false'));
export const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, expecting(`one of ${values.map((v) => `"${v}"`).join(', ')}`));
export const httpUrl = (phrase = 'an http:// or https:// URL') =>
  z.url({ protocol: /^https?$/, ...expecting(phrase) });
export const host = () => str('a host name or IP address');
export const base64Key = (bytes: number) =>
  z
    .string(expecting(`a base64-encoded ${bytes}-byte key`))
    .refine(
      (v) => /^[A-Za-z0-9+/_-]+={0,2}$/.test(v) && Buffer.from(v, 'base64').length === bytes,
      expecting(`a base64-encoded ${bytes}-byte key`),
    );

/** A whole section that may be left out: its defaults apply. */
export const section = <T extends z.ZodType>(schema: T) => schema.default(schema.parse({}) as never);
