// Reading the files a config names (domain lists). Only a regular file is read: the last
// path component is not followed if it is a link, a FIFO or device opens without blocking and
// is then refused, the size is capped, and the same ownership rules as the config file apply.
// Errors name the file and never show what is in it.
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { UsageError } from '../errors.js';

/** Largest file a config may name (a full v2fly geosite list is ~2 MiB; a million-entry domain list ~20 MiB). */
export const MAX_NAMED_FILE_BYTES = 32 << 20;

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

export interface FileFacts {
  /** st_mode permission bits (mode & 0o7777 is enough). */
  mode: number;
  /** Owner uid. */
  uid: number;
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/**
 * Throws UsageError when a file is group- or world-writable, or owned by someone other than
 * root and `selfUid`. `label` names it (`--config FILE`), `what` says what a writer could change.
 */
export function refuseWritableByOthers(
  label: string,
  path: string,
  facts: FileFacts,
  selfUid: number,
  what: string,
): void {
  const mode = facts.mode & 0o7777;
  if (mode & 0o022) {
    const who = mode & 0o002 ? 'every user' : 'its group';
    throw new UsageError(`${label}: mode ${octal(mode)} lets ${who} change ${what}: run 'chmod go-w ${path}'`);
  }
  if (facts.uid !== 0 && facts.uid !== selfUid) {
    throw new UsageError(
      `${label}: owned by uid ${facts.uid}, neither root nor the user running tranproxy (uid ${selfUid}), who could change it: run 'chown root ${path}' (or your own user)`,
    );
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function checkOpened(label: string, path: string, st: Stats, max: number): void {
  if (!st.isFile()) throw new UsageError(`${label}: ${path} is ${kindOf(st)}: name a regular file`);
  if (st.size > max) throw new UsageError(`${label}: ${path} is larger than ${max >> 20} MiB`);
  refuseWritableByOthers(label, path, st, process.geteuid?.() ?? 0, 'which names are routed where');
}

function openError(label: string, path: string, e: NodeJS.ErrnoException): UsageError {
  if (e instanceof UsageError) return e;
  if (e.code === 'ELOOP')
    return new UsageError(`${label}: ${path} is a symbolic link: name the file itself (links are not followed)`);
  if (e.code === 'ENOENT') return new UsageError(`${label}: cannot read ${path}: no such file`);
  return new UsageError(`${label}: cannot read ${path}: ${e.code ?? e.message}`);
}

const tooLarge = (label: string, path: string, max: number) =>
  new UsageError(`${label}: ${path} is larger than ${max >> 20} MiB`);

/** A named file's text, synchronously (start-up and SIGHUP). Throws UsageError. */
export function readNamedFileSync(label: string, path: string, max = MAX_NAMED_FILE_BYTES): string {
  return readNamedFileBytesSync(label, path, max).toString('utf8');
}

/** A named file's bytes, synchronously, in one buffer of the size fstat gave (a big domain list). */
export function readNamedFileBytesSync(label: string, path: string, max = MAX_NAMED_FILE_BYTES): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(path, OPEN_FLAGS);
    const st = fstatSync(fd);
    checkOpened(label, path, st, max);
    // One byte more than announced: a file that grew after the fstat is read on and checked.
    let buf = Buffer.allocUnsafe(st.size + 1);
    let total = 0;
    for (;;) {
      if (total === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(64 << 10)]);
      const n = readSync(fd, buf, total, buf.length - total, null);
      if (n === 0) break;
      total += n;
      if (total > max) throw tooLarge(label, path, max);
    }
    return buf.subarray(0, total);
  } catch (e) {
    throw openError(label, path, e as NodeJS.ErrnoException);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A named file's text, read off the event loop (the console). Throws UsageError. */
export async function readNamedFile(label: string, path: string, max = MAX_NAMED_FILE_BYTES): Promise<string> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, OPEN_FLAGS);
    checkOpened(label, path, await fh.stat(), max);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(64 << 10), 0, 64 << 10, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > max) throw tooLarge(label, path, max);
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    throw openError(label, path, e as NodeJS.ErrnoException);
  } finally {
    await fh?.close();
  }
}

/**
 * Throws UsageError unless `path` (links resolved) lies inside one of `dirs`: the console may
 * only name files there, so it cannot be pointed at /etc/shadow or /proc.
 */
export async function confineToDirs(label: string, path: string, dirs: readonly string[]): Promise<void> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    throw openError(label, path, e as NodeJS.ErrnoException);
  }
  for (const d of dirs) {
    const base = await realpath(d).catch(() => undefined);
    if (!base) continue;
    const rel = relative(base, real);
    if (rel && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel)) return;
  }
  throw new UsageError(
    `${label}: ${path} is outside ${dirs.join(', ')}: the console may only name files in the config file's directory`,
  );
}
