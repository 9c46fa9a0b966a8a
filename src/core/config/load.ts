import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { type Document, isCollection, isPair, isScalar, LineCounter, type Node } from 'yaml';
import type { z } from 'zod';
import { TealError } from '../errors.js';
import { envFileProblems, userProblems } from './host-checks.js';
import { unknownPlaceholders } from './interpolate.js';
import { describeValue, TealConfig } from './schema.js';
import { documentProblems, LIMITS, nestedTooDeep, parseBounded } from './yaml-bounds.js';

/** One thing wrong with a config file, located as precisely as the file allows. */
export interface Problem {
  file: string;
  line?: number;
  column?: number;
  /** Dotted path inside the document: services.web.health.timeout */
  path: string;
  message: string;
}

export interface LoadedConfig {
  config: TealConfig;
  /** Absolute path of the file read. */
  file: string;
  /** Folder of the file: relative paths in it resolve from here. */
  dir: string;
  /** Absolute state dir (config.stateDir resolved). */
  stateDir: string;
  /** Absolute folder of pipeline workspaces and artifacts (config.workDir, else `<stateDir>-work`). */
  workDir: string;
}

export function formatProblem(p: Problem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  return p.path ? `${where} ${p.path}: ${p.message}` : `${where} ${p.message}`;
}

function invalid(file: string, problems: Problem[]): TealError {
  const lines = problems.map(formatProblem);
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return new TealError('TEAL_CONFIG_INVALID', `${file} has ${count}:\n  ${lines.join('\n  ')}`, {
    problems,
  });
}

/** Reads, parses and validates a teal.yml; throws TEAL_CONFIG_INVALID listing every problem. */
export function loadConfig(file: string): LoadedConfig {
  return loadConfigText(file).loaded;
}

/** loadConfig, with the exact text it validated: a reload hashes what it applies. */
export function loadConfigText(file: string): { loaded: LoadedConfig; text: string } {
  const abs = path.resolve(file);
  if (!existsSync(abs)) {
    throw new TealError(
      'TEAL_CONFIG_NOT_FOUND',
      `no configuration at ${abs}; create a teal.yml there or name one with -c <file>`,
      { file: abs },
    );
  }
  const text = readBounded(abs);
  return { loaded: parseConfig(text, abs), text };
}

/** The file's text, refusing what is not a regular file or is over the size bound before reading it. */
function readBounded(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile())
      throw invalid(file, [{ file, path: '', message: 'is not a regular file (teal reads teal.yml whole)' }]);
    if (stat.size > LIMITS.bytes) throw invalid(file, [tooLarge(file, stat.size)]);
    const buffer = Buffer.alloc(stat.size);
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function tooLarge(file: string, bytes: number): Problem {
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  return { file, path: '', message: `is ${mb(bytes)}, over the ${mb(LIMITS.bytes)} a teal.yml may be` };
}

/** Validates config text as if it were the file `file` (which need not exist). */
export function parseConfig(text: string, file: string): LoadedConfig {
  const relative = path.relative(process.cwd(), file);
  const display = relative && !relative.startsWith('..') ? relative : file;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > LIMITS.bytes) throw invalid(display, [tooLarge(display, bytes)]);
  const lineCounter = new LineCounter();
  const at = (offset: number, message: string): Problem => {
    const pos = lineCounter.linePos(offset);
    return { file: display, line: pos.line, column: pos.col, path: '', message };
  };
  // Duplicate keys are checked by documentProblems, in linear time (yaml's uniqueKeys is quadratic).
  const parsed = parseBounded(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if ('tooDeep' in parsed) {
    // Refused mid-parse, so the line is counted here rather than by the LineCounter.
    const before = text.slice(0, parsed.tooDeep);
    const line = before.split('\n').length;
    const column = parsed.tooDeep - before.lastIndexOf('\n');
    throw invalid(display, [
      { file: display, line, column, path: '', message: `YAML syntax: ${nestedTooDeep}` },
    ]);
  }
  const doc = parsed.doc;

  if (doc.errors.length > 0) {
    throw invalid(
      display,
      doc.errors.map((e) => {
        // yaml turns its own recursion limit into an error; say what it means for the file.
        const message = /call stack/i.test(e.message) ? nestedTooDeep : e.message.split('\n')[0];
        return at(e.pos[0], `YAML syntax: ${message}`);
      }),
    );
  }
  const bounds = documentProblems(doc);
  if (bounds.length > 0) {
    throw invalid(
      display,
      bounds.map((p) => at(p.offset, `YAML syntax: ${p.message}`)),
    );
  }

  // documentProblems bounded what aliases expand to; yaml's own count would refuse 101 uses of one anchor.
  const data: unknown = doc.toJS({ maxAliasCount: -1 }) ?? {};
  const result = TealConfig.safeParse(data, { reportInput: true });
  const problems: Problem[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...toProblems(issue, doc, lineCounter, display));
  }
  problems.push(...placeholderProblems(data, doc, lineCounter, display));
  if (result.success) {
    problems.push(...routeProblems(result.data as TealConfig, doc, lineCounter, display));
    problems.push(...pipelineProblems(result.data as TealConfig, doc, lineCounter, display));
    problems.push(...fleetProblems(result.data as TealConfig, doc, lineCounter, display));
    const onHost = [
      ...envFileProblems(result.data as TealConfig, path.dirname(file)),
      ...userProblems(result.data as TealConfig),
    ];
    for (const { at, message } of onHost)
      problems.push({ ...locate(doc, lineCounter, at), file: display, path: at.join('.'), message });
  }
  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    throw invalid(display, problems);
  }

  const config = result.data as TealConfig;
  const dir = path.dirname(file);
  const stateDir = path.resolve(dir, config.stateDir);
  const workDir = config.workDir === undefined ? `${stateDir}-work` : path.resolve(dir, config.workDir);
  // Stages run in the work dir: `..` from there must never lead into the state dir (nor the other way).
  const inside = (a: string, b: string) => a === b || a.startsWith(`${b}${path.sep}`);
  if (inside(workDir, stateDir) || inside(stateDir, workDir)) {
    throw invalid(display, [
      {
        ...locate(doc, lineCounter, ['workDir']),
        file: display,
        path: 'workDir',
        message: `${workDir} must be outside the state dir ${stateDir} (and not contain it): stages run there`,
      },
    ]);
  }
  return { config, file, dir, stateDir, workDir };
}

/** Two services claiming the same host and path: the data plane could not tell which one a request is for. */
function routeProblems(config: TealConfig, doc: Document, lc: LineCounter, file: string): Problem[] {
  const owner = new Map<string, string>();
  const problems: Problem[] = [];
  for (const [name, svc] of Object.entries(config.services)) {
    for (const [i, route] of svc.routes.entries()) {
      const key = `${route.host ?? '*'} ${route.path}`;
      const other = owner.get(key);
      if (other !== undefined && other !== name) {
        const at = ['services', name, 'routes', String(i)];
        problems.push({
          ...locate(doc, lc, at),
          file,
          path: at.join('.'),
          message: `path ${route.path} on ${route.host ?? 'any host'} is already routed to service ${other}`,
        });
      }
      owner.set(key, name);
    }
  }
  return problems;
}

/** Fleet hosts share nothing with the control plane but the store: it must be etcd. */
function fleetProblems(config: TealConfig, doc: Document, lc: LineCounter, file: string): Problem[] {
  if (config.store.kind === 'etcd') return [];
  const problems: Problem[] = [];
  for (const [name, svc] of Object.entries(config.services)) {
    const field = svc.hosts ? 'hosts' : svc.hostLabels ? 'hostLabels' : undefined;
    if (!field) continue;
    const at = ['services', name, field];
    problems.push({
      ...locate(doc, lc, at),
      file,
      path: at.join('.'),
      message: `fleet hosts need store: { kind: etcd } (the agents on other hosts read their work from it), not ${config.store.kind}`,
    });
  }
  return problems;
}

/** A pipeline deploying a service teal.yml does not define, or the same one twice. */
function pipelineProblems(config: TealConfig, doc: Document, lc: LineCounter, file: string): Problem[] {
  const problems: Problem[] = [];
  const services = Object.keys(config.services);
  for (const [name, pipeline] of Object.entries(config.pipelines)) {
    const seen = new Set<string>();
    for (const [i, env] of pipeline.environments.entries()) {
      const at = ['pipelines', name, 'environments', String(i)];
      const problem = !services.includes(env.service)
        ? `no service named ${env.service} (services: ${services.join(', ')})`
        : seen.has(env.service)
          ? `${env.service} is already an environment of this pipeline`
          : undefined;
      if (problem) problems.push({ ...locate(doc, lc, at), file, path: at.join('.'), message: problem });
      seen.add(env.service);
    }
  }
  return problems;
}

/** Unknown {{placeholders}} in the raw text, so they are found alongside schema problems. */
function placeholderProblems(data: unknown, doc: Document, lc: LineCounter, file: string): Problem[] {
  const services = (data as { services?: unknown }).services;
  if (!services || typeof services !== 'object') return [];
  const problems: Problem[] = [];
  const check = (at: string[], value: unknown) => {
    if (typeof value !== 'string') return;
    for (const bad of unknownPlaceholders(value)) {
      problems.push({
        ...locate(doc, lc, at),
        file,
        path: at.join('.'),
        message: `unknown placeholder {{${bad}}} (known: {{version}}, {{service}}, {{slot}})`,
      });
    }
  };
  for (const [name, svc] of Object.entries(services as Record<string, Record<string, unknown>>)) {
    if (!svc || typeof svc !== 'object') continue;
    if (Array.isArray(svc.command)) {
      for (const [i, arg] of svc.command.entries()) check(['services', name, 'command', String(i)], arg);
    }
    check(['services', name, 'cwd'], svc.cwd);
    check(['services', name, 'image'], svc.image);
    check(['services', name, 'workdir'], svc.workdir);
    for (const list of ['entrypoint', 'volumes'] as const) {
      const items = svc[list];
      if (Array.isArray(items))
        for (const [i, v] of items.entries()) check(['services', name, list, String(i)], v);
    }
    if (svc.labels && typeof svc.labels === 'object') {
      for (const [k, v] of Object.entries(svc.labels)) check(['services', name, 'labels', k], v);
    }
    if (svc.env && typeof svc.env === 'object') {
      for (const [k, v] of Object.entries(svc.env)) check(['services', name, 'env', k], v);
    }
    if (Array.isArray(svc.verify)) {
      for (const [i, step] of svc.verify.entries()) {
        const at = ['services', name, 'verify', String(i)];
        const http = (step as { http?: { path?: unknown; body?: unknown } })?.http;
        if (http && typeof http === 'object') {
          check([...at, 'http', 'path'], http.path);
          check([...at, 'http', 'body'], http.body);
        }
        const run = (step as { run?: unknown })?.run;
        if (typeof run === 'string' && /\{\{/.test(run)) {
          problems.push({
            ...locate(doc, lc, [...at, 'run']),
            file,
            path: [...at, 'run'].join('.'),
            message:
              'placeholders are not spliced into shell commands; use $TEAL_VERSION, $TEAL_URL, $TEAL_SLOT or $TEAL_SERVICE',
          });
        }
      }
    }
  }
  return problems;
}

function toProblems(issue: z.core.$ZodIssue, doc: Document, lc: LineCounter, file: string): Problem[] {
  const at = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(issue.path);
    return issue.keys.map((key) => ({
      ...locate(doc, lc, [...at, key], true),
      file,
      path: [...at, key].join('.'),
      message: known ? `unknown key (expected one of: ${known.join(', ')})` : 'unknown key',
    }));
  }
  if (issue.code === 'invalid_union' && issue.errors.length > 1) {
    // Report the branch the user evidently meant (the one with the fewest complaints), not "no match".
    const sizes = issue.errors.map((branch) => branch.length);
    const best = Math.min(...sizes);
    if (sizes.filter((n) => n === best).length === 1) {
      const branch = issue.errors[sizes.indexOf(best)]!;
      return branch.flatMap((sub) =>
        toProblems({ ...sub, path: [...issue.path, ...sub.path] } as z.core.$ZodIssue, doc, lc, file),
      );
    }
  }
  if (issue.code === 'invalid_key') {
    return [
      {
        ...locate(doc, lc, at, true),
        file,
        path: at.join('.'),
        message: issue.issues[0]?.message ?? issue.message,
      },
    ];
  }
  let message = issue.message;
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    message = message.startsWith('Invalid input')
      ? `required (expected ${issue.expected})`
      : `required: ${message.replace(/, got nothing$/, '')}`;
  } else if (issue.code === 'invalid_type' && message.startsWith('Invalid input')) {
    message = `expected ${issue.expected}, got ${describeValue(issue.input)}`;
  } else if (issue.code === 'invalid_value' && message.startsWith('Invalid')) {
    message = `expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}, got ${describeValue(issue.input)}`;
  } else if ((issue.code === 'too_small' || issue.code === 'too_big') && message.startsWith('Too')) {
    message = `${message.replace(/^Too (small|big): expected (number|string|array) to (have )?/, 'expected ')}, got ${describeValue(issue.input)}`;
  }
  return [{ ...locate(doc, lc, at), file, path: at.join('.'), message }];
}

/** Line and column of the node at `at` (or of its key, for unknown keys), else of its nearest parent. */
function locate(
  doc: Document,
  lc: LineCounter,
  at: string[],
  wantKey = false,
): { line?: number; column?: number } {
  const index = indexOf(doc);
  for (let depth = at.length; depth >= 0; depth--) {
    const entry = index.get(at.slice(0, depth).join('\0'));
    const node = wantKey && depth === at.length && depth > 0 ? entry?.key : entry?.value;
    if (node?.range) {
      const pos = lc.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return {};
}

interface Located {
  key?: Node;
  value?: Node;
}

const indexes = new WeakMap<Document, Map<string, Located>>();

/**
 * Every node of the document by its path, built once per document on the first problem: looking each
 * problem up with `doc.getIn` scans its mappings and made a file with many problems quadratic.
 */
function indexOf(doc: Document): Map<string, Located> {
  const cached = indexes.get(doc);
  if (cached) return cached;
  const index = new Map<string, Located>();
  const stack: { path: string[]; located: Located }[] = [
    { path: [], located: { value: doc.contents as Node } },
  ];
  while (stack.length > 0) {
    const { path: at, located } = stack.pop()!;
    index.set(at.join('\0'), located);
    const node = located.value;
    if (!isCollection(node)) continue;
    (node.items as unknown[]).forEach((item, i) => {
      if (isPair(item)) {
        if (!isScalar(item.key)) return;
        const key = String(item.key.value);
        stack.push({ path: [...at, key], located: { key: item.key as Node, value: item.value as Node } });
      } else stack.push({ path: [...at, String(i)], located: { value: item as Node } });
    });
  }
  indexes.set(doc, index);
  return index;
}

/** The keys a strict object accepts, to suggest them next to an unknown one. */
function knownKeys(at: PropertyKey[]): string[] | undefined {
  let schema: z.ZodType = TealConfig;
  for (const step of at) {
    schema = unwrap(schema);
    const def = (
      schema as {
        def?: {
          type?: string;
          shape?: Record<string, z.ZodType>;
          valueType?: z.ZodType;
          element?: z.ZodType;
          options?: z.ZodType[];
        };
      }
    ).def;
    if (def?.type === 'object' && def.shape) schema = def.shape[String(step)] as z.ZodType;
    else if (def?.type === 'record' && def.valueType) schema = def.valueType;
    else if (def?.type === 'array' && def.element) schema = def.element;
    else return undefined;
    if (!schema) return undefined;
  }
  schema = unwrap(schema);
  const def = (schema as { def?: { type?: string; shape?: Record<string, unknown> } }).def;
  return def?.type === 'object' && def.shape
    ? Object.keys(def.shape).filter((k) => k !== '$schema')
    : undefined;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema as { def?: { type?: string; innerType?: z.ZodType; in?: z.ZodType; options?: z.ZodType[] } };
  for (;;) {
    const t = s.def?.type;
    if ((t === 'default' || t === 'prefault' || t === 'optional' || t === 'nullable') && s.def?.innerType)
      s = s.def.innerType as typeof s;
    else if (t === 'pipe' && s.def?.in) s = s.def.in as typeof s;
    else if (t === 'union' && s.def?.options?.length === 1) s = s.def.options[0] as typeof s;
    else return s as z.ZodType;
  }
}
