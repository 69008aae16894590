/**
 * The one table of the file types the bridge names itself: a file extension for a MIME type (file
 * names of received media) and a MIME type for an extension (files a local user shares by URL).
 */

const TYPES: readonly (readonly [mime: string, ext: string, ...more: string[]])[] = [
  ['image/jpeg', 'jpg', 'jpeg'],
  ['image/png', 'png'],
  ['image/gif', 'gif'],
  ['image/webp', 'webp'],
  ['video/mp4', 'mp4'],
  ['video/webm', 'webm'],
  ['audio/ogg', 'ogg', 'oga', 'opus'],
  ['audio/mpeg', 'mp3'],
  ['audio/mp4', 'm4a'],
  ['application/pdf', 'pdf'],
  ['text/plain', 'txt'],
];

const EXT_BY_MIME = new Map(TYPES.map(([mime, ext]) => [mime, ext]));
const MIME_BY_EXT = new Map(TYPES.flatMap(([mime, ...exts]) => exts.map((e) => [e, mime] as const)));

/** `image/jpeg` -> `jpg` (parameters such as `; codecs=opus` ignored); undefined when unknown. */
export function extensionOf(mimetype: string): string | undefined {
  return EXT_BY_MIME.get(baseMime(mimetype));
}

/** `photo.JPG` or `jpg` -> `image/jpeg`; undefined when unknown. */
export function mimeOfFileName(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return MIME_BY_EXT.get((dot < 0 ? name : name.slice(dot + 1)).toLowerCase());
}

/** The type without parameters, lower case: `Audio/Ogg; codecs=opus` -> `audio/ogg`. */
export function baseMime(mimetype: string): string {
  const semi = mimetype.indexOf(';');
  return (semi < 0 ? mimetype : mimetype.slice(0, semi)).trim().toLowerCase();
}
