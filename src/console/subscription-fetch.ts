// Fetching a subscription URL: the body is streamed and the size cap enforced while reading,
// so an endless or huge answer is cut off at the cap instead of being buffered whole.
export const SUBSCRIPTION_TIMEOUT_MS = 15_000;
export const SUBSCRIPTION_MAX_BYTES = 4 << 20;

export interface FetchOptions {
  userAgent?: string;
  maxBytes?: number;
  timeoutMs?: number;
}

const tooLarge = (max: number) => new Error(`the subscription is larger than ${max >> 20} MiB`);

/** The body of `url` as text; rejects on a non-2xx status, past `maxBytes` (decoded) or past `timeoutMs`. */
export async function fetchSubscription(url: string, opts: FetchOptions = {}): Promise<string> {
  const limits = {
    maxBytes: opts.maxBytes ?? SUBSCRIPTION_MAX_BYTES,
    timeoutMs: opts.timeoutMs ?? SUBSCRIPTION_TIMEOUT_MS,
  };
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new Error(`no complete answer within ${limits.timeoutMs / 1000} s`)),
    limits.timeoutMs,
  );
  try {
    const res = await fetch(url, {
      signal: ac.signal,
      redirect: 'follow',
      ...(opts.userAgent ? { headers: { 'user-agent': opts.userAgent } } : {}),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    if (Number(res.headers.get('content-length') ?? 0) > limits.maxBytes) throw tooLarge(limits.maxBytes);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of res.body ?? []) {
      total += chunk.byteLength;
      if (total > limits.maxBytes) throw tooLarge(limits.maxBytes);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    throw ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason : e;
  } finally {
    clearTimeout(timer);
    ac.abort(); // whatever is left of the body is not read: close the connection
  }
}
