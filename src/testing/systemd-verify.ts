import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * `systemd-analyze verify` as a pass/fail check. It exits 0 after a setting it could not parse
 * ("Failed to parse kill mode specification, ignoring"), so anything it prints counts as a problem:
 * a unit teal writes must verify silently. It needs no running systemd: it loads the file, resolves
 * the dependencies it names from the host's unit folders, and checks that ExecStart's binary exists.
 */
export function verifyUnit(file: string, options: { user?: boolean } = {}): Promise<string[]> {
  const args = [...(options.user ? ['--user'] : []), 'verify', '--man=no', file];
  // A user manager's checks want its runtime folder, which exists only under a login session.
  const runtime = options.user ? mkdtempSync(path.join(tmpdir(), 'teal-xdg-')) : undefined;
  const env = runtime ? { ...process.env, XDG_RUNTIME_DIR: runtime } : process.env;
  return new Promise((resolve) => {
    execFile('/usr/bin/systemd-analyze', args, { timeout: 30_000, env }, (err, stdout, stderr) => {
      if (runtime) rmSync(runtime, { recursive: true, force: true });
      const said = `${stdout}${stderr}`
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      if (err && said.length === 0) said.push(`systemd-analyze failed: ${err.message}`);
      resolve(said);
    });
  });
}

/**
 * An ExecStart= line split back into words as systemd.service(5) "Command lines" reads it: words
 * split on blanks, "..." quoting with C escapes, `%%` a literal %, and in arguments `$$` a literal
 * $. A lone `%` (or `$` in an argument) would be expanded by systemd: it throws, nothing is guessed.
 */
export function execWords(line: string): string[] {
  // The executable is taken as written but for specifiers; arguments also expand variables.
  return splitWords(line, (index) => (index === 0 ? '%' : '%$'));
}

/** A list that unquotes (Environment=, RequiresMountsFor=): only specifiers are expanded. */
export function listWords(line: string): string[] {
  return splitWords(line, () => '%');
}

/** A path setting that takes the rest of the line (WorkingDirectory=, EnvironmentFile=). */
export function pathValue(value: string): string {
  return unescapeWord(value, value, '%');
}

function splitWords(line: string, special: (index: number) => string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ') i++;
    if (i >= line.length) break;
    let raw = '';
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') i++;
        raw += line[i++];
      }
      if (line[i++] !== '"') throw new Error(`unterminated quote in ${line}`);
      if (i < line.length && line[i] !== ' ') throw new Error(`text right after a closing quote in ${line}`);
    } else {
      while (i < line.length && line[i] !== ' ') raw += line[i++];
    }
    words.push(unescapeWord(raw, line, special(words.length)));
  }
  return words;
}

/** `%%` and `$$` to their characters; any other `%x` or `$x` is a specifier or a variable. */
function unescapeWord(raw: string, line: string, special: string): string {
  let out = '';
  for (let j = 0; j < raw.length; j++) {
    const c = raw[j]!;
    if (special.includes(c)) {
      if (raw[j + 1] !== c) throw new Error(`systemd would expand ${c}${raw[j + 1] ?? ''} in ${line}`);
      j++;
    }
    out += c;
  }
  return out;
}
