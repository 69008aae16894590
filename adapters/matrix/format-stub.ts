/** Temporary stand-in for format.ts (being written): plain text both ways. Removed once it lands. */
export function markupToMatrix(text: string): {
  body: string;
  format?: 'org.matrix.custom.html';
  formatted_body?: string;
} {
  return { body: text };
}

export function matrixToMarkup(content: {
  body?: unknown;
  format?: unknown;
  formatted_body?: unknown;
}): string {
  return typeof content.body === 'string' ? content.body : '';
}
