// Header-injection configuration: validation of user-supplied headers and a one-time
// compilation into the form the streaming rewriter needs on its hot path.
//
// Why compile: the rewriter runs once per request head at nginx speed, so everything that
// depends only on the configuration is done here, once: the injected block is rendered to
// bytes (in both blank-line flavours, CRLF and bare LF, so the client's terminator can be
// kept without concatenating), and the header names the rewriter must recognise
// (framing headers, X-Forwarded-For, replaced custom headers) are put in a table indexed by
// name length so that most client header lines are dismissed with one array lookup.
//
// Why validate strictly: injected bytes go straight onto the wire. A name that is not a
// token or a value with CR/LF/NUL would let configuration smuggle extra header lines or
// requests; the seed (nginx-tranproxy) also mangled values containing ':' — here the flag
// is split at the FIRST ':' only.

import { UsageError } from '../errors.js';

export interface HeaderSpec {
  name: string;
  value: string;
}
export type XffMode = 'append' | 'replace';
export interface InjectConfig {
  /** Custom headers; each REPLACES a same-named header the client sent (case-insensitive). */
  headers: HeaderSpec[];
  /** X-Forwarded-For: append → "client-supplied, value" (all client XFF lines merged with ", "); replace → only value. */
  forwardedFor?: { value: string; mode: XffMode };
  /** Largest request head accepted (request line + header section); default 65536. */
  maxHeadBytes: number;
  /** Let h2c (prior-knowledge preface, Upgrade: h2c) through unstamped; default: refused. */
  allowH2c?: boolean;
  /** Refuse connections whose first byte is not HTTP (e.g. TLS) instead of passing them through. */
  httpOnly?: boolean;
}

export const DEFAULT_MAX_HEAD_BYTES = 65536;

// ---- byte tables shared with the rewriter -------------------------------------------------

/** TCHAR[b] === 1 iff b is an RFC 9110 tchar. */
export const TCHAR = new Uint8Array(256);
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;
for (let b = 0x30; b <= 0x39; b++) TCHAR[b] = 1;
for (let b = 0x41; b <= 0x5a; b++) {
  TCHAR[b] = 1;
  TCHAR[b + 0x20] = 1;
}

/** ASCII lower-casing table (other bytes map to themselves). */
export const LOWER = new Uint8Array(256);
for (let b = 0; b < 256; b++) LOWER[b] = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;

/**
 * LOWER that also folds '_' to '-': CGI/WSGI servers turn both into '_' (HTTP_X_CLIENT_HOSTNAME),
 * so a client's X_Client_Hostname must count as X-Client-Hostname.
 */
export const FOLD = Uint8Array.from(LOWER);
FOLD[0x5f] = 0x2d;

/** A header name as CGI/WSGI servers see it: lower case, '_' as '-'. */
export function foldName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

// ---- header-name kinds the rewriter recognises --------------------------------------------

export const KIND_CONTENT_LENGTH = 1;
export const KIND_TRANSFER_ENCODING = 2;
export const KIND_UPGRADE = 3;
/** X-Forwarded-For when forwardedFor is configured: dropped, and its values kept for append. */
export const KIND_XFF = 4;
/** A custom header the client also sent: dropped (the configured one is injected). */
export const KIND_REPLACE = 5;

/**
 * `lower` is the lower-cased name; for KIND_XFF and KIND_REPLACE it is also folded ('_' as
 * '-', compare with FOLD), for the framing kinds it is exact (compare with LOWER): a
 * Content_Length line is no Content-Length to nginx or Node, so it must not frame here either.
 */
export interface NameEntry {
  readonly lower: Uint8Array;
  readonly kind: number;
}

/**
 * Headers whose meaning belongs to the client connection and its message framing: the
 * rewriter frames bodies by the client's own Content-Length / Transfer-Encoding, and
 * Connection/Upgrade decide whether the connection stays HTTP. Replacing them would make
 * the proxy and the server disagree about where a request ends.
 */
const FORBIDDEN = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade']);

function isTokenString(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] !== 1) return false;
  }
  return true;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return s.slice(a, b);
}

function checkValue(what: string, value: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0d || c === 0x0a || c === 0x00) {
      throw new UsageError(`${what}: the value contains CR, LF or NUL, which would break the request head; remove it`);
    }
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
      throw new UsageError(
        `${what}: the value contains control character 0x${c.toString(16).padStart(2, '0')}; header values may hold only visible characters, spaces and tabs`,
      );
    }
  }
}

/** Validate one header to inject. UsageError on an invalid token name or CR/LF/NUL (or other control characters) in the value. Surrounding spaces/tabs of the value are trimmed. */
export function validateHeader(name: string, value: string): HeaderSpec {
  if (!isTokenString(name)) {
    throw new UsageError(
      `invalid header name '${name}': a header name is a non-empty token of letters, digits and !#$%&'*+-.^_\`|~ (no spaces, no ':')`,
    );
  }
  if (FORBIDDEN.has(foldName(name))) {
    throw new UsageError(
      `header '${name}' cannot be injected: it controls message framing or the connection; tranproxy keeps the client's own`,
    );
  }
  checkValue(`header '${name}'`, value);
  return { name, value: trimOws(value) };
}

/** Parse a `-H/--header` flag "Name:value": split at the FIRST ':' (the value may contain ':'), trim spaces/tabs around the value. */
export function parseHeaderFlag(flag: string): HeaderSpec {
  const colon = flag.indexOf(':');
  if (colon < 0) {
    throw new UsageError(`invalid header '${flag}': expected name:value, e.g. -H 'X-Team: payments'`);
  }
  return validateHeader(flag.slice(0, colon), flag.slice(colon + 1));
}

/** The configuration pre-rendered for the rewriter. Opaque to callers apart from `maxHeadBytes`. */
export class CompiledInject {
  /** Name-match table indexed by name length (bytes). */
  readonly byLen: (NameEntry[] | undefined)[];
  /** Injected lines (CRLF each) followed by the blank line, for heads ending in CRLF CRLF / in LF LF. */
  readonly blockCRLF: Buffer;
  readonly blockLF: Buffer;
  /** Same without the X-Forwarded-For line (used when a merged XFF line is built per request). */
  readonly restCRLF: Buffer;
  readonly restLF: Buffer;
  /** True when X-Forwarded-For is configured in append mode. */
  readonly xffAppend: boolean;
  /** "X-Forwarded-For: " and ", <value>\r\n", for building the merged line. */
  readonly xffPrefix: Buffer;
  readonly xffSuffix: Buffer;
  /** Nothing is injected: heads go through untouched. */
  readonly empty: boolean;

  constructor(
    readonly maxHeadBytes: number,
    headers: readonly HeaderSpec[],
    xff: { value: string; mode: XffMode } | undefined,
    readonly policy: { readonly allowH2c: boolean; readonly httpOnly: boolean } = { allowH2c: false, httpOnly: false },
  ) {
    const table: (NameEntry[] | undefined)[] = [];
    const add = (name: string, kind: number): void => {
      const lower = Buffer.from(kind >= KIND_XFF ? foldName(name) : name.toLowerCase(), 'latin1');
      const list = (table[lower.length] ??= []);
      if (!list.some((e) => e.kind === kind && Buffer.compare(e.lower, lower) === 0)) list.push({ lower, kind });
    };
    add('content-length', KIND_CONTENT_LENGTH);
    add('transfer-encoding', KIND_TRANSFER_ENCODING);
    add('upgrade', KIND_UPGRADE);
    if (xff) add('x-forwarded-for', KIND_XFF);
    for (const h of headers) add(h.name, KIND_REPLACE);
    this.byLen = table;

    const xffLine = xff ? `X-Forwarded-For: ${xff.value}\r\n` : '';
    const rest = headers.map((h) => `${h.name}: ${h.value}\r\n`).join('');
    this.blockCRLF = Buffer.from(`${xffLine}${rest}\r\n`, 'utf8');
    this.blockLF = Buffer.from(`${xffLine}${rest}\n`, 'utf8');
    this.restCRLF = Buffer.from(`${rest}\r\n`, 'utf8');
    this.restLF = Buffer.from(`${rest}\n`, 'utf8');
    this.xffAppend = xff?.mode === 'append';
    this.xffPrefix = Buffer.from('X-Forwarded-For: ', 'latin1');
    this.xffSuffix = Buffer.from(xff ? `, ${xff.value}\r\n` : '\r\n', 'utf8');
    this.empty = headers.length === 0 && !xff;
  }
}

/** Validate the configuration and pre-render the injected block once. */
export function compileInjectConfig(cfg: InjectConfig): CompiledInject {
  const max = cfg.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new UsageError(
      `invalid maximum request-head size ${String(max)}: give a positive whole number of bytes (default ${DEFAULT_MAX_HEAD_BYTES})`,
    );
  }
  const headers = cfg.headers.map((h) => validateHeader(h.name, h.value));
  let xff: { value: string; mode: XffMode } | undefined;
  if (cfg.forwardedFor) {
    const { value, mode } = cfg.forwardedFor;
    if (mode !== 'append' && mode !== 'replace') {
      throw new UsageError(`invalid X-Forwarded-For mode '${String(mode)}': use 'append' or 'replace'`);
    }
    checkValue('X-Forwarded-For', value);
    const v = trimOws(value);
    if (v === '') throw new UsageError('X-Forwarded-For: the value is empty; give an address or omit the option');
    if (headers.some((h) => foldName(h.name) === 'x-forwarded-for')) {
      throw new UsageError(
        'X-Forwarded-For is set twice (as a custom header and as the forwarded-for option): keep one',
      );
    }
    xff = { value: v, mode };
  }
  return new CompiledInject(max, headers, xff, { allowH2c: cfg.allowH2c === true, httpOnly: cfg.httpOnly === true });
}
