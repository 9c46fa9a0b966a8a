import { createRequire } from 'node:module';

/**
 * HTTP/1.1 parsing with Node's own parser, llhttp, the one node:http uses, in its strict mode:
 * conflicting Content-Length and Transfer-Encoding, duplicate Content-Length, bad chunk sizes,
 * obs-fold, bare LF, oversized heads and NUL/CR/LF in header values are all errors. The data plane
 * faces the internet, and hand-written parsing is where request smuggling lives, so it parses
 * nothing itself. Going below node:http (to the parser node:http drives) is what lets it skip the
 * per-request IncomingMessage/ServerResponse/ClientRequest objects that cost most of a Node
 * proxy's time.
 *
 * `_http_common` is internal to Node; its parser API has been stable for years, and `selfCheck()`
 * runs at start so a Node that changed it fails loudly instead of mis-parsing.
 */

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | NativeError;
  finish(): undefined | NativeError;
  close(): void;
  free(): void;
  remove(): void;
  [key: number]: unknown;
}

interface NativeError extends Error {
  code: string;
  reason?: string;
  bytesParsed?: number;
}

const common = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: (new () => NativeParser) & Record<string, number>;
  methods: string[];
};
const { HTTPParser, methods } = common;

const K_HEADERS = HTTPParser.kOnHeaders! | 0;
const K_HEADERS_COMPLETE = HTTPParser.kOnHeadersComplete! | 0;
const K_BODY = HTTPParser.kOnBody! | 0;
const K_MESSAGE_COMPLETE = HTTPParser.kOnMessageComplete! | 0;
const STRICT = 0;

/** Heads over this size are refused (431 for requests): node:http's default. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface ParsedHead {
  /** Requests only. */
  method: string;
  url: string;
  /** Responses only. */
  status: number;
  statusMessage: string;
  versionMajor: number;
  versionMinor: number;
  /** Flat raw list: name, value, name, value... in the order received. */
  headers: string[];
  upgrade: boolean;
  keepAlive: boolean;
}

/** Returned by `head` to stop parsing: `execute` then throws a ParseError (HPE_CB_HEADERS_COMPLETE). */
export const STOP = Symbol('stop');

export interface ParserHandlers {
  /**
   * Return true to tell the parser the message has no body (a response to HEAD, say); STOP to
   * parse nothing more (a head llhttp accepts that the data plane refuses).
   */
  head(head: ParsedHead): boolean | typeof STOP;
  body(chunk: Buffer): void;
  complete(): void;
}

export class ParseError extends Error {
  readonly code: string;
  /** Bytes of the buffer that were consumed before the error. */
  readonly bytesParsed: number;
  constructor(err: NativeError) {
    super(err.reason ?? err.message);
    this.code = err.code;
    this.bytesParsed = err.bytesParsed ?? 0;
  }
}

/** One connection's parser. `execute` returns the bytes consumed (less than given after an upgrade). */
export class Http1Parser {
  private readonly native: NativeParser;
  // llhttp hands over heads of more than 32 headers in parts, before the head is complete.
  private pendingHeaders: string[] = [];
  private pendingUrl = '';

  constructor(kind: 'request' | 'response', handlers: ParserHandlers) {
    const native = new HTTPParser();
    native.initialize(
      kind === 'request' ? HTTPParser.REQUEST! : HTTPParser.RESPONSE!,
      {},
      MAX_HEADER_BYTES,
      STRICT,
    );
    native[K_HEADERS] = (headers: string[], url: string) => {
      for (const h of headers) this.pendingHeaders.push(h);
      this.pendingUrl += url;
    };
    native[K_HEADERS_COMPLETE] = (
      versionMajor: number,
      versionMinor: number,
      headers: string[] | undefined,
      method: number | undefined,
      url: string | undefined,
      status: number | undefined,
      statusMessage: string | undefined,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      let all = headers;
      let target = url;
      if (all === undefined) {
        all = this.pendingHeaders;
        target = this.pendingUrl;
        this.pendingHeaders = [];
        this.pendingUrl = '';
      }
      const skipBody = handlers.head({
        method: method === undefined ? '' : (methods[method] ?? ''),
        url: target ?? '',
        status: status ?? 0,
        statusMessage: statusMessage ?? '',
        versionMajor,
        versionMinor,
        headers: all,
        upgrade,
        keepAlive,
      });
      // llhttp takes any other value than 0, 1 and 2 as the callback failing, and stops.
      if (skipBody === STOP) return -1;
      return skipBody ? 1 : 0;
    };
    native[K_BODY] = handlers.body;
    native[K_MESSAGE_COMPLETE] = handlers.complete;
    this.native = native;
  }

  /** Parses a chunk; throws ParseError on malformed input. */
  execute(data: Buffer): number {
    const r = this.native.execute(data);
    if (typeof r !== 'number') throw new ParseError(r);
    return r;
  }

  /** The peer closed: completes a body that runs until close; throws if a message was cut short. */
  finish(): void {
    const r = this.native.finish();
    if (r !== undefined) throw new ParseError(r);
  }

  free(): void {
    this.native.remove();
    this.native.free();
  }
}

/** Proves at start that Node's parser still behaves as this file expects. */
export function selfCheck(): void {
  const seen: string[] = [];
  const p = new Http1Parser('request', {
    head: (h) => {
      seen.push(`${h.method} ${h.url} ${h.headers.join('|')} ${h.keepAlive}`);
      return false;
    },
    body: (c) => seen.push(`body ${c.toString()}`),
    complete: () => seen.push('complete'),
  });
  p.execute(
    Buffer.from('POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'),
  );
  p.free();
  const want = ['POST /x Host|a|Transfer-Encoding|chunked true', 'body abc', 'complete'];
  if (JSON.stringify(seen) !== JSON.stringify(want)) {
    throw new Error(`Node's HTTP parser does not behave as the data plane expects: ${JSON.stringify(seen)}`);
  }
  const strict = new Http1Parser('request', { head: () => false, body: () => {}, complete: () => {} });
  try {
    strict.execute(
      Buffer.from('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'),
    );
    throw new Error("Node's HTTP parser accepted Content-Length with Transfer-Encoding: refusing to run");
  } catch (err) {
    if (!(err instanceof ParseError)) throw err;
  } finally {
    strict.free();
  }
}
