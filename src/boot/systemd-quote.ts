import { TealError } from '../core/errors.js';

/**
 * Values written into a systemd unit so that systemd reads back exactly the string given
 * (systemd.unit(5) "Specifiers", systemd.service(5) "Command lines"). Every setting expands
 * specifiers, so `%` is always `%%`; command lines also expand `$VAR` (`$$` is a literal `$`) and
 * take C escapes inside quotes; Environment= and RequiresMountsFor= unquote their words; the
 * path settings (WorkingDirectory=, EnvironmentFile=) take the rest of the line as it is.
 *
 * A quote, a backslash or a control character in a path is refused rather than escaped: the
 * settings disagree on whether they unescape, and a newline cannot be written in most of them.
 */

const SAFE_WORD = /^[A-Za-z0-9_./:@=+,-]+$/;

/** Refuses what no unit setting can carry unambiguously; `what` names the value in the error. */
export function assertWritable(value: string, what: string): void {
  if (/["\\\x00-\x1f\x7f]/.test(value)) {
    throw new TealError(
      'TEAL_USAGE',
      `${what} ${JSON.stringify(value)} has a quote, a backslash or a control character, which a systemd unit cannot hold unambiguously; use a path without them`,
    );
  }
  if (value !== value.trim()) {
    throw new TealError(
      'TEAL_USAGE',
      `${what} ${JSON.stringify(value)} starts or ends with white space, which systemd strips; use a path without it`,
    );
  }
}

const specifiers = (value: string) => value.replaceAll('%', '%%');

/**
 * One word of ExecStart=: quoted unless plainly safe, `%` doubled, and `$` doubled in arguments.
 * The executable itself is not searched for variables (systemd-analyze verify looks for a
 * `$$` in it literally), so there a `$` stays as it is.
 */
export function execWord(value: string, what: string, executable = false): string {
  assertWritable(value, what);
  const escaped = executable ? specifiers(value) : specifiers(value).replaceAll('$', () => '$$');
  return SAFE_WORD.test(value) ? escaped : `"${escaped}"`;
}

/** A whole command line for ExecStart=: the executable, then its arguments. */
export function execLine(words: { value: string; what: string }[]): string {
  return words.map((w, i) => execWord(w.value, w.what, i === 0)).join(' ');
}

/** A setting that takes the rest of the line as one path (WorkingDirectory=, EnvironmentFile=). */
export function lineValue(value: string, what: string): string {
  assertWritable(value, what);
  return specifiers(value);
}

/** One word of a space-separated list that unquotes (RequiresMountsFor=, Environment=). */
export function listWord(value: string, what: string): string {
  assertWritable(value, what);
  const escaped = specifiers(value);
  return SAFE_WORD.test(value) ? escaped : `"${escaped}"`;
}

/** Free text (Description=): only specifiers matter, and a line break would end the setting. */
export function textValue(value: string): string {
  return specifiers(value.replace(/[\x00-\x1f\x7f\\]/g, '?'));
}
