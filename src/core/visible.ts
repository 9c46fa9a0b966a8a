/**
 * Text from outside teal (commit messages, app log lines, error messages, versions, names a client
 * gave) reaches people's terminals through the CLI and the daemon's readable log. A terminal obeys
 * control characters: ESC starts sequences that set the window title, clear the screen, move the
 * cursor over what was printed, or, in some terminals, write files or answer back as typed input;
 * CR and backspace overwrite a line; bidi overrides reorder it. So everything from outside is shown
 * through `visible` before a human sees it: each such character becomes its escaped form (`\x1b`,
 * `\r`, `\u202e`), readable and harmless. Newline and tab stay (text printed line by line needs
 * them). JSON output needs none of this: JSON.stringify escapes C0 controls already.
 */

// C0 controls except \t and \n, DEL, C1 controls (U+009B is CSI on 8-bit terminals), and the
// bidi embeddings, overrides and isolates that make text read other than it is stored.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const named: Record<string, string> = { '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v', '\0': '\\0' };

function escaped(ch: string): string {
  const short = named[ch];
  if (short) return short;
  const code = ch.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every control character a terminal would act on shown as its escape instead. */
export function visible(text: string): string {
  return text.replace(CONTROL, escaped);
}

/** The same for every string inside a decoded JSON value (keys too), for human output of API answers. */
export function visibleDeep<T>(value: T): T {
  if (typeof value === 'string') return visible(value) as T;
  if (Array.isArray(value)) return value.map(visibleDeep) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[visible(k)] = visibleDeep(v);
    return out as T;
  }
  return value;
}

// What JSON.stringify leaves raw although a terminal may act on it: DEL, C1 and the bidi controls.
const RAW_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON.stringify with those characters written as \u escapes too: the same JSON document (a
 * parser reads back the same value), but nothing in it a terminal would obey.
 */
export function jsonText(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    RAW_IN_JSON,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
