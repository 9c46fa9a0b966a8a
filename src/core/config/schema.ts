import { z } from 'zod';
import { FLEET_NAME } from '../fleet.js';
import { ADDRESS, parseAddress } from './address.js';
import { parseCidr } from './cidr.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { type Checked, checkRouteHost, checkRoutePath } from './route.js';
import { parseSize, SIZE_PATTERN } from './size.js';

export { type Address, parseAddress } from './address.js';

/**
 * The one schema of teal.yml. `loadConfig` validates with it; `json-schema.ts` turns the same schema
 * into schema/teal.schema.json for editors. Durations come out as milliseconds, addresses as
 * `{host, port}`, so no consumer parses strings again.
 */

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value);
}

const duration = (example: string, description: string) =>
  z
    .string({ error: (iss) => `expected a duration like "${example}", got ${describe(iss.input)}` })
    .regex(new RegExp(DURATION_PATTERN), {
      abort: true,
      error: (iss) => `expected a duration like "${example}", got ${describe(iss.input)}`,
    })
    .transform(parseDuration)
    .meta({ description: `${description} A duration with units: 250ms, 2s, 1m30s, 10m.` });

const port = z
  .number({ error: (iss) => `expected a port number (1-65535), got ${describe(iss.input)}` })
  .int({ error: (iss) => `expected a port number (1-65535), got ${describe(iss.input)}` })
  .min(1, { error: (iss) => `expected a port number (1-65535), got ${describe(iss.input)}` })
  .max(65535, { error: (iss) => `expected a port number (1-65535), got ${describe(iss.input)}` });

const address = (example: string, description: string) =>
  z
    .string({ error: (iss) => `expected an address like "${example}", got ${describe(iss.input)}` })
    .regex(ADDRESS, {
      abort: true,
      error: (iss) => `expected an address like "${example}", got ${describe(iss.input)}`,
    })
    .refine((s) => Number(s.split(':').pop()) <= 65535, {
      error: (iss) => `expected an address like "${example}", got ${describe(iss.input)}`,
    })
    .transform(parseAddress)
    .meta({ description });

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;

const ENDPOINT = /^https?:\/\/[^/\s?#]+\/?$/;

const endpoint = z
  .string({ error: (iss) => `expected a URL like "http://127.0.0.1:2379", got ${describe(iss.input)}` })
  .regex(ENDPOINT, {
    abort: true,
    error: (iss) => `expected a URL like "http://127.0.0.1:2379", got ${describe(iss.input)}`,
  })
  .refine((s) => URL.canParse(s), {
    error: (iss) => `expected a URL like "http://127.0.0.1:2379", got ${describe(iss.input)}`,
  });

const EtcdStore = z
  .strictObject({
    kind: z.literal('etcd'),
    endpoints: z
      .array(endpoint, {
        error: (iss) => `expected a list of URLs like [http://127.0.0.1:2379], got ${describe(iss.input)}`,
      })
      .min(1, { error: 'expected at least one URL, like [http://127.0.0.1:2379]' })
      .refine((urls) => new Set(urls.map((u) => u.startsWith('https:'))).size <= 1, {
        error: 'expected every endpoint to use the same scheme, all http:// or all https://',
      })
      .meta({ description: 'Client URLs of the etcd cluster members.' }),
    prefix: z
      .string({ error: (iss) => `expected a key prefix like "/teal", got ${describe(iss.input)}` })
      .regex(/^\/.*[^/]$/, {
        error: (iss) =>
          `expected a key prefix like "/teal" (starting with "/", not ending with one), got ${describe(iss.input)}`,
      })
      .default('/teal')
      .meta({ description: 'Prepended to every key: /teal/services/web/live.' }),
    tls: z
      .strictObject({
        ca: z.string().min(1).optional().meta({ description: 'PEM file of the CA that signed etcd.' }),
        cert: z.string().min(1).optional().meta({ description: 'PEM file of the client certificate.' }),
        key: z.string().min(1).optional().meta({ description: 'PEM file of the client key.' }),
      })
      .refine((t) => (t.cert === undefined) === (t.key === undefined), {
        error: 'expected cert and key together (a client certificate needs its key)',
      })
      .optional()
      .meta({ description: 'TLS for https:// endpoints; paths relative to teal.yml.' }),
    auth: z
      .strictObject({
        username: z.string().min(1, { error: 'expected the etcd user name' }),
        passwordEnv: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
            error: (iss) =>
              `expected the name of an environment variable like "TEAL_ETCD_PASSWORD", got ${describe(iss.input)}`,
          })
          .meta({ description: 'The environment variable holding the password, read at start.' }),
      })
      .optional()
      .meta({ description: 'etcd user and password.' }),
  })
  .refine((c) => c.tls === undefined || c.endpoints.every((u) => u.startsWith('https:')), {
    path: ['tls'],
    error: 'expected https:// endpoints when tls is set',
  });

export const StoreConfig = z
  .discriminatedUnion(
    'kind',
    [
      z.strictObject({
        kind: z.literal('sqlite'),
        path: z
          .string()
          .optional()
          .meta({ description: 'Database file; default store.db in the state dir.' }),
      }),
      EtcdStore,
    ],
    { error: () => 'expected kind: sqlite or etcd' },
  )
  .prefault({ kind: 'sqlite' })
  .meta({
    description:
      'Where teal keeps its state: the embedded SQLite store (needs nothing else), or etcd (several hosts, confd-readable keys).',
  });

const filePathString = (example: string) =>
  z
    .string({ error: (iss) => `expected a file path like "${example}", got ${describe(iss.input)}` })
    .min(1, { error: `expected a file path like "${example}"` });

const command = (example: string, description: string) =>
  z
    .string({ error: (iss) => `expected a shell command like "${example}", got ${describe(iss.input)}` })
    .min(1, { error: `expected a shell command like "${example}"` })
    .meta({ description });

/**
 * The preview listener: the only place `X-Teal-Slot` chooses a slot (the public one ignores it).
 * Loopback by default, so only this host (verify steps, `teal`, an SSH tunnel) reaches idle slots.
 */
const PreviewListener = z
  .strictObject({
    listen: address(
      '127.0.0.1:8081',
      'Where requests may choose a slot with X-Teal-Slot; default 127.0.0.1 on the public port + 1 (port 0 when the public port is 0).',
    ).optional(),
  })
  .prefault({})
  .meta({
    description: 'The preview listener (docs/previews.md): idle slots reachable from this host only.',
  });

/** Peers whose forwarded headers every proxy kind keeps and appends to (docs/security.md). */
const trustedProxies = z
  .array(
    z
      .string({
        error: (iss) =>
          `expected an IP address or a CIDR range like "10.0.0.0/8", got ${describe(iss.input)}`,
      })
      .transform((text, ctx) => {
        try {
          return parseCidr(text).text;
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
          return z.NEVER;
        }
      }),
    { error: (iss) => `expected a list of IP addresses or CIDR ranges, got ${describe(iss.input)}` },
  )
  .default([])
  .meta({
    description:
      'Proxies in front of teal (CIDRs or addresses, IPv4 and IPv6) whose X-Forwarded-For/-Proto/-Host, X-Real-IP and Forwarded are kept (X-Forwarded-For appended to); from anyone else they are replaced with what teal saw. None by default.',
  });

/** nginx run by the user; teal renders one included file and reloads (docs/nginx.md). */
const NginxProxy = z.strictObject({
  kind: z.literal('nginx'),
  config: filePathString('/etc/nginx/conf.d/teal.conf').meta({
    description:
      "The file teal writes with the whole routing table, included in nginx's http block; relative to teal.yml.",
  }),
  listen: address(
    '0.0.0.0:80',
    'Where the rendered servers listen (the `listen` the template prints).',
  ).prefault('0.0.0.0:80'),
  preview: PreviewListener,
  template: filePathString('nginx/teal.conf.mustache')
    .optional()
    .meta({ description: "A Mustache template of your own (docs/nginx.md); teal's default when absent." }),
  check: command(
    'nginx -t -q',
    'Checks the config with the new file in place; its message fails the deploy.',
  ).default('nginx -t -q'),
  reload: command('nginx -s reload', 'Makes nginx load the new file.').default('nginx -s reload'),
  pidFile: filePathString('/run/nginx.pid')
    .default('/run/nginx.pid')
    .meta({ description: "nginx's pid file: teal watches the master's workers to know a reload took." }),
  accessLog: filePathString('/var/log/nginx/teal-access.log').optional().meta({
    description: 'Where the template logs requests for per-pool stats; in the state dir by default.',
  }),
  trustedProxies,
});

/** haproxy started with teal's base config and driven through its runtime API (docs/haproxy.md). */
const HaproxyProxy = z.strictObject({
  kind: z.literal('haproxy'),
  socket: filePathString('/run/haproxy/teal.sock').meta({
    description:
      "haproxy's admin socket (runtime API), as the base config declares it; relative to teal.yml.",
  }),
  listen: address('0.0.0.0:80', 'Where users connect (the base config binds it).').prefault('0.0.0.0:80'),
  preview: PreviewListener,
  stateDir: filePathString('/var/lib/teal/haproxy').optional().meta({
    description:
      "The switch's state (routes map, server state) haproxy loads at start; <stateDir>/haproxy by default.",
  }),
  prefix: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,30}$/, { error: 'expected a name like "teal": lower-case letters, digits, _' })
    .default('teal')
    .meta({ description: 'Names of the frontend, lanes and ring in the base config.' }),
  lanes: z.number().int().min(2).max(1000).default(16).meta({
    description: 'Backends in the base config, each holding one pool: at least two per service.',
  }),
  serversPerLane: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(8)
    .meta({ description: 'Server slots per lane: the most instances one slot may have.' }),
  trustedProxies,
});

export const ProxyConfig = z
  .discriminatedUnion(
    'kind',
    [
      z.strictObject({
        kind: z.literal('builtin'),
        listen: address('0.0.0.0:8080', 'Where the data plane accepts user traffic.').prefault(
          '0.0.0.0:8080',
        ),
        preview: PreviewListener,
        maxBodySize: z
          .string({ error: (iss) => `expected a size like "100MB", got ${describe(iss.input)}` })
          .regex(new RegExp(SIZE_PATTERN), {
            abort: true,
            error: (iss) => `expected a size like "100MB", got ${describe(iss.input)}`,
          })
          .transform(parseSize)
          .prefault('100MB')
          .meta({ description: 'Request bodies over this get 413.' }),
        timeouts: z
          .strictObject({
            connect: duration('5s', 'An upstream not accepting a connection in this long gets 504.').prefault(
              '5s',
            ),
            response: duration('60s', 'An upstream sending no response head in this long gets 504.').prefault(
              '60s',
            ),
            idle: duration('75s', 'Idle client connections are closed after this.').prefault('75s'),
            headers: duration('60s', 'A request head must arrive within this (408).').prefault('60s'),
            send: duration(
              '60s',
              'A client not reading its answer (or an upstream not reading a request body) for this long is disconnected; only a stall counts, not a long stream.',
            ).prefault('60s'),
          })
          .prefault({}),
        limits: z
          .strictObject({
            maxConnections: z.number().int().min(1).default(10_000).meta({
              description:
                'Client connections open at once. At the cap the longest-idle ones are closed for a newcomer; with none idle it gets 503. Lowered at start to what ulimit -n allows (half of it, less 128).',
            }),
          })
          .prefault({}),
        trustedProxies,
      }),
      NginxProxy,
      HaproxyProxy,
    ],
    { error: () => 'expected kind: builtin, nginx or haproxy' },
  )
  .prefault({ kind: 'builtin' })
  .meta({ description: 'The traffic switch in front of the services.' });

export const ApiConfig = z
  .strictObject({
    listen: address('127.0.0.1:7070', 'Where the control API and dashboard listen.').prefault(
      '127.0.0.1:7070',
    ),
    timeouts: z
      .strictObject({
        headers: duration('10s', 'A request head must arrive within this (408, closed).').prefault('10s'),
        request: duration(
          '30s',
          'A whole request (head and body) must arrive within this; responses, event streams and log follows are not bounded by it.',
        ).prefault('30s'),
        idle: duration('5s', 'An idle keep-alive connection is closed after this.').prefault('5s'),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxConnections: z
          .number()
          .int()
          .min(1)
          .default(512)
          .meta({ description: 'Connections open at once; more are closed as they arrive.' }),
        authFailures: z.number().int().min(1).default(10).meta({
          description:
            'Wrong API tokens or dashboard logins one client address may send in a minute; then 429 with Retry-After until the minute ends.',
        }),
        webhookBody: z
          .string({ error: (iss) => `expected a size like "1MB", got ${describe(iss.input)}` })
          .regex(new RegExp(SIZE_PATTERN), {
            abort: true,
            error: (iss) => `expected a size like "1MB", got ${describe(iss.input)}`,
          })
          .transform(parseSize)
          .prefault('1MB')
          .meta({ description: 'Webhook deliveries over this get 413, read no further.' }),
      })
      .prefault({}),
  })
  .prefault({})
  .meta({
    description: 'The control API. Its token comes from TEAL_TOKEN or is generated into the state dir.',
  });

export const HealthConfig = z
  .strictObject({
    path: z.string().startsWith('/', { error: 'expected a path starting with "/"' }).default('/health'),
    interval: duration('250ms', 'Time between probes.').prefault('500ms'),
    timeout: duration('2s', 'Time one probe may take.').prefault('2s'),
    healthyThreshold: z.number().int().min(1).default(2).meta({
      description: 'Consecutive passing probes before an instance counts as healthy.',
    }),
    deadline: duration('60s', 'Give up on an instance that is not healthy by then.').prefault('60s'),
    liveness: z
      .strictObject({
        enabled: z.boolean().default(true).meta({ description: 'Probe running instances at all.' }),
        interval: duration('5s', 'Time between liveness probes of one instance.').prefault('5s'),
        timeout: duration('2s', 'Time one liveness probe may take.').prefault('2s'),
        failureThreshold: z.number().int().min(1).default(3).meta({
          description: 'Consecutive failed liveness probes before the instance is restarted.',
        }),
      })
      .prefault({})
      .meta({
        description:
          "The same path probed on the live and warm slots' running instances; one that fails failureThreshold times in a row is restarted.",
      }),
  })
  .prefault({})
  .meta({ description: 'The HTTP readiness probe; any 2xx passes.' });

export const RestartConfig = z
  .strictObject({
    enabled: z.boolean().default(true).meta({
      description: 'Restart instances of the live and warm slots that exit or fail their liveness probe.',
    }),
    initialBackoff: duration(
      '100ms',
      'Wait before the first restart; doubled for each failure in a row.',
    ).prefault('100ms'),
    maxBackoff: duration(
      '30s',
      'The longest wait between restarts (a degraded slot is retried at this).',
    ).prefault('30s'),
    resetAfter: duration(
      '1m',
      'An instance that ran this long since its restart starts the backoff over.',
    ).prefault('1m'),
    crashLoop: z
      .strictObject({
        restarts: z.number().int().min(1).default(5).meta({
          description: 'Restarts within the window that mark the slot degraded.',
        }),
        window: duration('60s', 'The window the restarts are counted in.').prefault('60s'),
      })
      .prefault({}),
  })
  .prefault({})
  .meta({
    description: "teal's supervision of running instances: restart with backoff, crash loops bounded.",
  });

const JSON_PATH = /^[A-Za-z_$][\w$-]*(\[\d+\])*(\.[A-Za-z_$][\w$-]*(\[\d+\])*)*$/;

const through = z
  .enum(['direct', 'preview'], { error: () => 'expected through: direct or preview' })
  .default('direct')
  .meta({
    description:
      "direct: the new slot's first instance; preview: through the data plane's preview listener with X-Teal-Slot.",
  });

const HttpVerify = z.strictObject({
  http: z.strictObject({
    path: z.string().startsWith('/', { error: 'expected a path starting with "/"' }).default('/'),
    method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']).default('GET'),
    headers: z.record(z.string(), z.string()).default({}),
    status: z.number().int().min(100).max(599).default(200),
    body: z.string().optional().meta({ description: 'A substring the response body must contain.' }),
    json: z
      .record(
        z.string().regex(JSON_PATH, { error: 'expected a JSON path like "status" or "items[0].id"' }),
        z.unknown(),
      )
      .optional()
      .meta({
        description:
          'JSON paths (a.b, items[0].id) and the values the response body must hold there, compared exactly.',
      }),
    timeout: duration('5s', 'How long the request may take.').prefault('5s'),
    through: through,
  }),
});

const LoadVerify = z.strictObject({
  load: z
    .strictObject({
      path: z.string().startsWith('/', { error: 'expected a path starting with "/"' }).default('/'),
      method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']).default('GET'),
      headers: z.record(z.string(), z.string()).default({}),
      connections: z
        .number()
        .int()
        .min(1)
        .max(1024)
        .default(8)
        .meta({ description: 'Keep-alive connections.' }),
      requests: z
        .number()
        .int()
        .min(1)
        .optional()
        .meta({ description: 'Requests in all; or give a duration.' }),
      duration: duration('10s', 'How long to send requests, when `requests` is not given.').prefault('5s'),
      maxErrorRate: z
        .number({ error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
        .min(0, { error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
        .max(1, { error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
        .default(0)
        .meta({ description: 'Share of requests that may fail (non-2xx or no answer): 0.01 is 1%.' }),
      maxP99: duration('250ms', 'The 99th percentile latency must stay at or under this.').optional(),
      timeout: duration('5s', 'A request taking longer counts as failed.').prefault('5s'),
      through: through,
    })
    .meta({
      description: 'A built-in stress step: N requests at C connections, with limits on errors and p99.',
    }),
});

const RunVerify = z.strictObject({
  run: z.string().min(1, { error: 'expected a shell command, like "npm run smoke"' }).meta({
    description:
      'A shell command run with TEAL_URL, TEAL_PREVIEW_URL, TEAL_SLOT, TEAL_VERSION and TEAL_SERVICE set; exit 0 passes.',
  }),
  timeout: duration('60s', 'How long the command may run.').prefault('60s'),
});

export const VerifyStep = z
  .union([HttpVerify, RunVerify, LoadVerify], {
    error: () =>
      'expected a step with "run: <command>", "http: {path, status, body}" or "load: {connections, requests}"',
  })
  .meta({ description: 'A check run against the new slot before it takes traffic.' });

/** A route's host or path, checked and normalised by the rules every proxy kind shares (route.ts). */
const routePart = (check: (value: string) => Checked, example: string) =>
  z.string({ error: (iss) => `expected ${example}, got ${describe(iss.input)}` }).transform((value, ctx) => {
    const checked = check(value);
    if (checked.ok) return checked.value;
    ctx.issues.push({
      code: 'custom',
      input: value,
      message: `expected ${checked.rule}, got ${describe(value)}`,
    });
    return z.NEVER;
  });

const Route = z.strictObject({
  host: routePart(checkRouteHost, 'a host name like "www.example.com"').optional().meta({
    description:
      'Host header to match (a DNS name or IPv4 address; case and a trailing dot do not matter); any host when absent.',
  }),
  path: routePart(checkRoutePath, 'a path prefix like "/api"').default('/').meta({
    description: 'Path prefix to match, on segment boundaries: letters, digits and ._~!*+,:@=&/-.',
    // For editors; route.ts has the whole rule (no "//", "." or ".." segments).
    pattern: '^/[A-Za-z0-9._~!*+,:@=&/-]*$',
    maxLength: 1024,
  }),
});

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const envNameOf = (what: string) =>
  z.string().regex(ENV_NAME, {
    error: (iss) => `expected ${what} like "DATABASE_URL", got ${describe(iss.input)}`,
  });

/**
 * A value, or where teal takes it when the instance (stage, step) starts: so a secret is named once,
 * reaches only what asks for it, and only the reference is ever stored.
 */
const envValue = z.union(
  [
    z.string(),
    z.number(),
    z.boolean(),
    z.strictObject({ fromEnv: envNameOf('the name of a variable of teal up') }),
    z.strictObject({ file: z.string().min(1) }),
  ],
  {
    error: (iss) =>
      `expected a string, number, boolean, { fromEnv: NAME } or { file: path }, got ${describe(iss.input)}`,
  },
);

const envMap = z.record(envNameOf('a variable name'), envValue).default({}).meta({
  description:
    "Environment: a value ({{version}} is replaced), { fromEnv: NAME } (that variable of teal up, read at start) or { file: path } (the file's content without its final newline, relative to teal.yml, read at start). Nothing else of teal's environment is passed.",
});

const USER_OR_GROUP = /^([a-z_][a-z0-9_.-]*\$?|\d+)$/i;
const runAs = (what: 'user' | 'group', text: string) =>
  z
    .string({ error: (iss) => `expected a ${what} name or numeric id, got ${describe(iss.input)}` })
    .regex(USER_OR_GROUP, {
      error: (iss) =>
        `expected a ${what} name or numeric id like "www-data" or "33", got ${describe(iss.input)}`,
    })
    .optional()
    .meta({ description: text });
const runUser = (of: string) =>
  runAs(
    'user',
    `The user ${of} run as (a name from /etc/passwd or a uid). When teal runs as root the default is nobody; otherwise teal's own user, and naming another is an error.`,
  );
const runGroup = (of: string) =>
  runAs(
    'group',
    `The group ${of} run as (a name from /etc/group or a gid); default: the user's primary group.`,
  );

const inheritEnv = z
  .array(envNameOf('a variable name'), {
    error: (iss) => `expected a list of variable names like [NODE_OPTIONS], got ${describe(iss.input)}`,
  })
  .default([])
  .meta({
    description:
      "Names of teal up's variables passed as they are (when set); besides these only PATH, LANG, LC_ALL, TZ, HOME, USER, LOGNAME, env and teal's own TEAL_*/PORT/HOST reach it.",
  });

const DOCKER_ONLY = [
  'image',
  'port',
  'pull',
  'init',
  'memory',
  'cpus',
  'entrypoint',
  'workdir',
  'labels',
  'volumes',
  'network',
] as const;

const stringList = (example: string) =>
  z.array(z.string(), {
    error: (iss) => `expected a list of strings like ${example}, got ${describe(iss.input)}`,
  });

const hookCommand = z
  .union(
    [
      z.string().min(1),
      z.strictObject({
        run: z.string().min(1, { error: 'expected a shell command' }),
        timeout: duration('60s', 'How long the hook may run.').prefault('60s'),
      }),
    ],
    { error: () => 'expected a shell command, or { run: <command>, timeout: 60s }' },
  )
  .transform((h) => (typeof h === 'string' ? { run: h, timeout: 60_000 } : h));

const Hooks = z
  .strictObject({
    preDeploy: hookCommand
      .optional()
      .meta({ description: 'Before anything starts; failing aborts the deploy.' }),
    postSwitch: hookCommand.optional().meta({
      description: 'Right after the switch; failing is recorded, traffic stays on the new release.',
    }),
    postDeploy: hookCommand.optional().meta({ description: 'When the deployment is done.' }),
    onFailure: hookCommand
      .optional()
      .meta({ description: 'When a deployment fails or is rolled back by the analysis.' }),
  })
  .prefault({})
  .meta({
    description:
      'Shell commands (sh -c) run at points of a deployment with TEAL_SERVICE, TEAL_VERSION, TEAL_SLOT, TEAL_URL, TEAL_PREVIEW_URL, TEAL_DEPLOYMENT in their env.',
  });

const Analysis = z
  .strictObject({
    window: duration('1m', 'How long to watch the new slot after the switch.').prefault('30s'),
    interval: duration('1s', 'How often to look at the counters.').prefault('1s'),
    maxErrorRate: z
      .number({ error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
      .min(0, { error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
      .max(1, { error: (iss) => `expected a share from 0 to 1 (0.01 is 1%), got ${describe(iss.input)}` })
      .default(0.01)
      .meta({ description: "5xx and upstream errors as a share of the new slot's requests." }),
    maxP99: duration('500ms', "The new slot's p99 latency must stay at or under this.").optional(),
    maxP99Ratio: z.number().min(1).optional().meta({
      description:
        "The new slot's p99 may be at most this many times the old slot's (from its last numbers).",
    }),
    minRequests: z.number().int().min(1).default(20).meta({
      description: 'Fewer requests than this in the window is too little to judge: the analysis passes.',
    }),
    verify: z
      .array(VerifyStep)
      .default([])
      .meta({ description: 'Verify steps re-run through the live route during the window.' }),
  })
  .meta({
    description:
      'Post-switch analysis: watch the new slot for a window and switch back at once (the old slot is still running) if it fails.',
  });

export const ServiceConfig = z
  .strictObject({
    runtime: z
      .enum(['process', 'docker'], { error: () => 'expected runtime: process or docker' })
      .default('process')
      .meta({ description: 'How releases run: as processes on this host, or as Docker containers.' }),
    command: z
      .array(z.string(), {
        error: (iss) => `expected a list of arguments like [node, server.js], got ${describe(iss.input)}`,
      })
      .min(1, { error: 'expected at least the program to run, like [node, server.js]' })
      .optional()
      .meta({
        description:
          "Program and arguments, run without a shell (process: required; docker: replaces the image's CMD). PORT is set in its env. {{version}} is replaced.",
      }),
    cwd: z.string().default('.').meta({ description: 'Working directory, relative to teal.yml (process).' }),
    image: z
      .string({
        error: (iss) => `expected an image like "registry.local/web:{{version}}", got ${describe(iss.input)}`,
      })
      .min(1, { error: 'expected an image like "registry.local/web:{{version}}"' })
      .optional()
      .meta({ description: 'docker: the image of a release; {{version}} and {{service}} are replaced.' }),
    port: port
      .optional()
      .meta({ description: 'docker: the port the app listens on inside the container (PORT is set to it).' }),
    pull: z
      .enum(['always', 'missing', 'never'], { error: () => 'expected pull: always, missing or never' })
      .optional()
      .meta({
        description:
          'docker: missing (default) pulls when the engine lacks the image; always pulls every deploy; never requires it on the engine. A failed pull fails the deploy.',
      }),
    init: z.boolean().optional().meta({
      description:
        'docker: run an init as PID 1 that forwards SIGTERM and reaps zombies (default true; node as PID 1 ignores SIGTERM).',
    }),
    memory: z
      .string({ error: (iss) => `expected a size like "512MB", got ${describe(iss.input)}` })
      .regex(new RegExp(SIZE_PATTERN), {
        abort: true,
        error: (iss) => `expected a size like "512MB", got ${describe(iss.input)}`,
      })
      .transform(parseSize)
      .optional()
      .meta({ description: 'docker: memory limit per container, like 512MB.' }),
    cpus: z
      .number({ error: (iss) => `expected a number of CPUs like 0.5, got ${describe(iss.input)}` })
      .positive({ error: (iss) => `expected a number of CPUs like 0.5, got ${describe(iss.input)}` })
      .optional()
      .meta({ description: 'docker: CPU limit per container, in CPUs (0.5 is half of one).' }),
    entrypoint: stringList('[/bin/tini, --]')
      .optional()
      .meta({ description: "docker: replaces the image's entrypoint." }),
    workdir: z
      .string()
      .min(1)
      .optional()
      .meta({ description: 'docker: working directory inside the container.' }),
    labels: z
      .record(z.string(), z.string())
      .optional()
      .meta({ description: 'docker: extra container labels (teal.* is reserved).' }),
    volumes: stringList('["data:/var/lib/app"]')
      .optional()
      .meta({ description: 'docker: mounts as source:target[:options], a host path or a named volume.' }),
    network: z
      .string()
      .min(1)
      .optional()
      .meta({ description: "docker: a network to attach to instead of the engine's default bridge." }),
    bindAddress: z
      .string()
      .regex(/^[0-9.]+$|^[0-9a-fA-F:]+$/, { error: 'expected an IP address like "127.0.0.1"' })
      .default('127.0.0.1')
      .meta({
        description:
          "Where instances' ports are bound (docker: the published host address) and the proxy reaches them.",
      }),
    retain: z.number().int().min(1).max(100).default(5).meta({
      description:
        'docker: the images of the last N releases are kept for teal rollback --to, older ones removed.',
    }),
    env: envMap,
    inheritEnv,
    user: runUser('its instances, run steps and hooks (process)'),
    group: runGroup('its instances, run steps and hooks (process)'),
    ports: z.strictObject({ blue: port, green: port }).optional().meta({
      description: 'Fixed (host) port per slot (instance i gets port + i); free ports when absent.',
    }),
    instances: z.number().int().min(1).max(64).default(1).meta({
      description: 'Instances per slot (on this host; with hosts or hostLabels see instancesPerHost).',
    }),
    hosts: z
      .array(z.string().regex(FLEET_NAME, { error: 'expected a host id like "web-1" (teal agent --id)' }))
      .min(1)
      .optional()
      .meta({
        description:
          'Fleet hosts (teal agent --id) the instances run on, through etcd; a deploy starts the release on each.',
      }),
    hostLabels: z.record(z.string(), z.string()).optional().meta({
      description:
        'Run on every registered fleet host whose labels (teal agent --label) include all of these.',
    }),
    instancesPerHost: z
      .number()
      .int()
      .min(1)
      .max(64)
      .optional()
      .meta({ description: 'With hosts or hostLabels: instances of a slot on each host (default 1).' }),
    routes: z
      .array(Route)
      .min(1)
      .prefault([{}])
      .meta({ description: 'Host and path prefixes routed to this service; the longest prefix wins.' }),
    health: HealthConfig,
    restart: RestartConfig,
    verify: z.array(VerifyStep).default([]),
    drain: duration(
      '30s',
      'How long in-flight requests and streams on the old slot may take after the switch.',
    ).prefault('30s'),
    keepWarm: duration(
      '10m',
      'How long the old slot keeps running after the switch, for an instant rollback.',
    ).prefault('10m'),
    stopTimeout: duration('10s', 'Time between SIGTERM and SIGKILL when stopping an instance.').prefault(
      '10s',
    ),
    promote: z
      .enum(['auto', 'manual'], { error: () => 'expected promote: auto or manual' })
      .default('auto')
      .meta({
        description:
          'auto: switch as soon as verification passes (continuous deployment); manual: wait on the preview route for `teal promote` or `teal abort` (continuous delivery).',
      }),
    promoteTimeout: duration(
      '1h',
      'With promote: manual, abort a deployment nobody promoted in this long.',
    ).optional(),
    hooks: Hooks,
    analysis: Analysis.optional(),
  })
  .superRefine((svc, ctx) => {
    if (svc.hosts && svc.hostLabels)
      ctx.addIssue({
        code: 'custom',
        path: ['hostLabels'],
        message: 'use either hosts or hostLabels, not both',
      });
    if (svc.instancesPerHost !== undefined && !svc.hosts && !svc.hostLabels) {
      ctx.addIssue({
        code: 'custom',
        path: ['instancesPerHost'],
        message: 'only with hosts or hostLabels (on this host, use instances)',
      });
    }
    // Which fields a runtime needs is a rule across fields; each problem is located at its field.
    if (svc.runtime === 'docker') {
      if (svc.image === undefined)
        ctx.addIssue({ code: 'custom', path: ['image'], message: 'required for runtime: docker' });
      if (svc.port === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['port'],
          message: 'required for runtime: docker (the port the app listens on inside the container)',
        });
      }
      if (svc.labels) {
        for (const key of Object.keys(svc.labels).filter((k) => k.startsWith('teal.'))) {
          ctx.addIssue({
            code: 'custom',
            path: ['labels', key],
            message: 'labels starting with "teal." are reserved',
          });
        }
      }
      for (const key of ['user', 'group'] as const) {
        if (svc[key] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: "only for runtime: process (a container runs as its image's USER)",
          });
        }
      }
      if (svc.network === 'host') {
        ctx.addIssue({
          code: 'custom',
          path: ['network'],
          message: 'network "host" is not supported: teal publishes the container port',
        });
      }
      return;
    }
    if (svc.command === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['command'],
        message: 'required for runtime: process (like [node, server.js])',
      });
    }
    for (const key of DOCKER_ONLY) {
      if (svc[key] !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'only for runtime: docker (add runtime: docker)',
        });
      }
    }
  })
  .meta({ description: 'One web app that teal deploys blue-green.' });

export const DockerConfig = z
  .strictObject({
    host: z
      .string()
      .regex(/^(unix:\/\/\/.+|tcp:\/\/[^/\s]+)$/, {
        error: (iss) =>
          `expected an engine address like "unix:///var/run/docker.sock" or "tcp://127.0.0.1:2375", got ${describe(iss.input)}`,
      })
      .optional()
      .meta({
        description: 'The Docker (or podman) engine; default DOCKER_HOST, else unix:///var/run/docker.sock.',
      }),
    timeout: duration('30s', 'How long teal waits for the engine to answer a request.').prefault('30s'),
  })
  .optional()
  .meta({ description: 'The Docker engine, for services with runtime: docker.' });

const envName = (example: string) =>
  z
    .string({
      error: (iss) =>
        `expected the name of an environment variable like "${example}", got ${describe(iss.input)}`,
    })
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
      error: (iss) =>
        `expected the name of an environment variable like "${example}", got ${describe(iss.input)}`,
    });

const BRANCH = /^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$/;

const Stage = z
  .strictObject({
    name: z
      .string({ error: (iss) => `expected a stage name like "test", got ${describe(iss.input)}` })
      .regex(/^[a-z0-9][a-z0-9_-]{0,38}$/, {
        error: (iss) =>
          `expected a stage name of lower-case letters, digits, - and _ like "test", got ${describe(iss.input)}`,
      }),
    run: command(
      'npm ci && npm test',
      'Run with sh -c in a clean checkout of the commit; TEAL_COMMIT, TEAL_BRANCH, TEAL_VERSION, TEAL_PIPELINE, TEAL_RUN and TEAL_ARTIFACT are in its env. Exit 0 passes.',
    ),
    timeout: duration('10m', 'A stage still running after this is killed and fails the run.').prefault('10m'),
  })
  .meta({ description: 'One step of a pipeline run (lint, test, build...).' });

export const PipelineConfig = z
  .strictObject({
    source: z
      .strictObject({
        repo: z
          .string({
            error: (iss) =>
              `expected a git URL or a local path like "/srv/git/web.git", got ${describe(iss.input)}`,
          })
          .min(1, { error: 'expected a git URL or a local path like "/srv/git/web.git"' })
          // A "repo" starting with "-" would read as an option to git.
          .refine((r) => !r.startsWith('-'), { error: 'expected a git URL or a path, not an option' })
          .meta({ description: 'What git clones: a URL, or a path relative to teal.yml.' }),
        branches: z
          .array(
            z.string().regex(BRANCH, {
              error: (iss) => `expected a branch name like "main", got ${describe(iss.input)}`,
            }),
            { error: (iss) => `expected a list of branches like [main], got ${describe(iss.input)}` },
          )
          .min(1, { error: 'expected at least one branch, like [main]' })
          .default(['main'])
          .meta({
            description: 'Pushes to these branches start a run; others are acknowledged and skipped.',
          }),
      })
      .meta({ description: 'The repository and the branches this pipeline follows.' }),
    stages: z
      .array(Stage, { error: (iss) => `expected a list of stages, got ${describe(iss.input)}` })
      .default([])
      .refine((list) => new Set(list.map((s) => s.name)).size === list.length, {
        error: 'expected each stage to have its own name',
      })
      .meta({ description: 'Commands run in order in a clean checkout; the first failure stops the run.' }),
    artifact: z
      .strictObject({
        path: z
          .string({
            error: (iss) => `expected a folder of the checkout like "dist", got ${describe(iss.input)}`,
          })
          .min(1, { error: 'expected a folder of the checkout like "dist"' })
          .refine((p) => !p.startsWith('/') && !p.split(/[\\/]/).includes('..'), {
            error: 'expected a folder inside the checkout (relative, without "..")',
          })
          .meta({
            description:
              'A folder of the checkout (filled by the stages; TEAL_ARTIFACT names it) kept as <workDir>/artifacts/<pipeline>/<commit> and used as the cwd of process services.',
          }),
      })
      .optional()
      .meta({ description: 'What the stages build: it becomes the release of process services.' }),
    env: envMap,
    inheritEnv,
    user: runUser('the stages'),
    group: runGroup('the stages'),
    environments: z
      .array(
        z
          .union(
            [
              z.string().regex(SERVICE_NAME, { error: 'expected a service name' }),
              z.strictObject({
                service: z.string().regex(SERVICE_NAME, { error: 'expected a service name' }),
              }),
            ],
            { error: () => 'expected a service like { service: web-staging }' },
          )
          .transform((e) => (typeof e === 'string' ? { service: e } : e)),
        { error: (iss) => `expected a list of services like [{ service: web }], got ${describe(iss.input)}` },
      )
      .default([])
      .meta({
        description:
          'Services deployed in order with the commit as version, each with its own verify steps and promote gate; a failure stops the run.',
      }),
  })
  .meta({
    description: 'Deploy on every commit: stages in a clean checkout, then each environment in order.',
  });

const secretOf = (what: string, example: string) =>
  z
    .strictObject({
      secretEnv: envName(example).meta({
        description: `The environment variable of teal up holding ${what}.`,
      }),
    })
    .optional();

export const WebhooksConfig = z
  .strictObject({
    github: secretOf('the webhook secret (X-Hub-Signature-256)', 'TEAL_GITHUB_SECRET'),
    gitlab: secretOf('the secret token (X-Gitlab-Token)', 'TEAL_GITLAB_TOKEN'),
    gitea: secretOf('the webhook secret (X-Gitea-Signature)', 'TEAL_GITEA_SECRET'),
    generic: secretOf('the HMAC-SHA256 key (X-Teal-Signature-256)', 'TEAL_WEBHOOK_SECRET'),
  })
  .prefault({})
  .meta({
    description:
      'POST /v1/hooks/<github|gitlab|gitea|generic>/<pipeline> on the API address; authenticated by their signature, not the API token.',
  });

export const TealConfig = z
  .strictObject({
    $schema: z.string().optional(),
    stateDir: z
      .string()
      .default('.teal')
      .meta({ description: 'Where teal keeps its state, relative to teal.yml.' }),
    workDir: z.string().min(1).optional().meta({
      description:
        "Where pipelines check commits out and keep artifacts, relative to teal.yml; default: the state dir's path with -work appended (.teal-work). Never inside the state dir, which stages must not reach.",
    }),
    store: StoreConfig,
    proxy: ProxyConfig,
    api: ApiConfig,
    docker: DockerConfig,
    services: z
      .record(
        z.string().regex(SERVICE_NAME, {
          error: (iss) =>
            `expected a service name of lower-case letters, digits and dashes, got ${describe(iss.input)}`,
        }),
        ServiceConfig,
      )
      .refine((s) => Object.keys(s).length > 0, { error: 'expected at least one service' }),
    pipelines: z
      .record(
        z.string().regex(SERVICE_NAME, {
          error: (iss) =>
            `expected a pipeline name of lower-case letters, digits and dashes, got ${describe(iss.input)}`,
        }),
        PipelineConfig,
      )
      .default({}),
    webhooks: WebhooksConfig,
  })
  .meta({ title: 'teal.yml', description: 'teal: blue-green deploys with zero downtime.' });

export type TealConfig = z.output<typeof TealConfig>;
export type ServiceConfig = z.output<typeof ServiceConfig>;
export type DockerConfig = z.output<typeof DockerConfig>;
export type HealthConfig = z.output<typeof HealthConfig>;
export type RestartConfig = z.output<typeof RestartConfig>;
export type VerifyStep = z.output<typeof VerifyStep>;
export type RouteConfig = z.output<typeof Route>;
export type PipelineConfig = z.output<typeof PipelineConfig>;
export type WebhooksConfig = z.output<typeof WebhooksConfig>;
export { describe as describeValue };
