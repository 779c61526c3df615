// Parsers for the load generators' output, and the statistics the report uses.

export interface IperfResult {
  /** Receiver-side throughput. */
  gbps: number;
  /** Bytes the receiver got over the whole test. */
  bytes: number;
  retransmits: number;
}

/** iperf3 -J output (3.12). Throws with iperf3's own message on a failed test. */
export function parseIperf(json: string): IperfResult {
  let j: {
    error?: string;
    end?: { sum_received?: { bits_per_second: number; bytes: number }; sum_sent?: { retransmits?: number } };
  };
  try {
    j = JSON.parse(json);
  } catch {
    throw new Error(`iperf3 printed no JSON: ${json.slice(0, 500)}`);
  }
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const r = j.end?.sum_received;
  if (!r) throw new Error('iperf3: no sum_received in its output');
  return { gbps: r.bits_per_second / 1e9, bytes: r.bytes, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

export interface WrkResult {
  rps: number;
  requests: number;
  p50ms: number;
  p99ms: number;
  /** Socket errors (connect+read+write+timeout) and non-2xx/3xx responses. */
  errors: number;
  non2xx: number;
}

function durationMs(v: string, unit: string): number {
  const n = Number(v);
  switch (unit) {
    case 'us':
      return n / 1000;
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    case 'm':
      return n * 60_000;
    default:
      throw new Error(`wrk: unknown time unit '${unit}'`);
  }
}

/** wrk 4.1 output with --latency. */
export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const req = /^\s+(\d+) requests in/m.exec(text);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(text);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(text);
  if (!rps || !req || !p50 || !p99) throw new Error(`cannot parse wrk output:\n${text}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const sockErrors = sock ? sock.slice(1, 5).reduce((s, x) => s + Number(x), 0) : 0;
  return {
    rps: Number(rps[1]),
    requests: Number(req[1]),
    p50ms: durationMs(p50[1]!, p50[2]!),
    p99ms: durationMs(p99[1]!, p99[2]!),
    errors: sockErrors,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A number with about three significant digits. */
export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}
