// Whether the splice engine can run here, on its own: the supervisor asks it without loading
// the engine (its loop, the rewriter) it never runs.
import { addressOf, loadLibc, rawClose, rawPipe, rawSplice, rawWrite } from '../../kernel/ffi.js';
import { SPLICE_F_NONBLOCK } from '../../kernel/linux.js';

let available: boolean | undefined;

/**
 * True when splice(2), epoll and koffi work here (Linux x86-64/AArch64, koffi loads, a
 * pipe-to-pipe splice moves a byte). Cached; never throws.
 */
export function spliceAvailable(): boolean {
  if (available !== undefined) return available;
  try {
    available =
      process.platform === 'linux' &&
      (process.arch === 'x64' || process.arch === 'arm64') &&
      (loadLibc(), probeSplice());
  } catch {
    available = false;
  }
  return available;
}

/** A one-byte pipe-to-pipe splice: proves splice(2) works here. Closes what it opens. */
function probeSplice(): boolean {
  const scratch = Buffer.alloc(64);
  const byte = Buffer.alloc(1);
  const a = rawPipe(scratch);
  if (typeof a === 'number') return false;
  const b = rawPipe(scratch);
  try {
    if (typeof b === 'number') return false;
    if (rawWrite(a[1], addressOf(byte), 1) !== 1) return false;
    return rawSplice(a[0], b[1], 1, SPLICE_F_NONBLOCK) === 1;
  } finally {
    for (const fd of [...a, ...(typeof b === 'number' ? [] : b)]) rawClose(fd);
  }
}
