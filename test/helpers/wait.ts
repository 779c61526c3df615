// Waiting for a state instead of sleeping a fixed time: a fixed sleep is too short on a slow
// machine and wasted on a fast one.

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` every `everyMs` until it holds; after `ms` throws "timed out waiting for WHAT",
 * with `what` called then when it is a function (so the message can show the last state).
 */
export async function until(
  what: string | (() => string),
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(everyMs);
  }
}

/**
 * Polls `read` every `everyMs` until it gives the same value `times` times in a row (whatever
 * was still closing has closed) and returns that value; throws naming `what` after `ms`.
 */
export async function steady<T>(
  what: string,
  read: () => T,
  { everyMs = 100, times = 3, ms = 10_000 }: { everyMs?: number; times?: number; ms?: number } = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  let last = read();
  for (let same = 1; same < times; ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} to hold still (last ${String(last)})`);
    await sleep(everyMs);
    const now = read();
    same = now === last ? same + 1 : 1;
    last = now;
  }
  return last;
}
