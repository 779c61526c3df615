// DNS (g, h, i): the gateway's forwarder against dnsmasq, dnsperf from the client namespace.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import { fmtNum } from '../lib/parse.js';
import { startLogged, waitForListen } from '../lib/proc.js';
import { newCase, record, type CaseResult } from '../lib/report.js';
import { ADDR, alternate, type Ctx, logPath, PORT, startTranproxy, tmpDir, type VariantDef } from '../lib/runner.js';

const DNS = { port: 53, upstreamPort: 5300, names: 50, zone: 'bench.test' } as const;

type DnsMode = 'g' | 'h' | 'i';

/** What dnsperf printed: queries/s, average and worst latency (ms), lost queries. */
function parseDnsperf(out: string): { qps: number; avgMs: number; maxMs: number; lost: number } {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`dnsperf output not understood: ${out.slice(-400)}`);
    return Number(m[1]);
  };
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxMs: num(/Average Latency \(s\):.*max ([\d.]+)\)/) * 1000,
    lost: num(/Queries lost:\s+(\d+)/),
  };
}

/** The lab's authoritative upstream: dnsmasq answering *.bench.test from --address, TTL 1 h. */
function startDnsUpstream(srv: Host): LabProcess {
  return startLogged(srv, logPath('dns-upstream'), 'dnsmasq', [
    '-k',
    '--no-resolv',
    '--no-hosts',
    '--pid-file=',
    '--user=root',
    '--bind-interfaces',
    '--listen-address=127.0.0.1',
    '-p',
    String(DNS.upstreamPort),
    `--address=/${DNS.zone}/192.0.2.200`,
    '--local-ttl=3600',
    '--cache-size=0',
    '--log-facility=-',
  ]);
}

export function dnsCase(ctx: Ctx, id: DnsMode): { c: CaseResult; run: () => Promise<void> } {
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const secs = ctx.opts.quick ? 3 : 8;
  const what = { g: 'answers from the cache', h: 'fake-IP answers', i: 'uncached answers (every query goes upstream)' }[
    id
  ];
  const c = newCase(
    {
      id,
      title: `(${id}) DNS ${what} (dnsperf -c 10)`,
      method: [
        `\`dnsperf -c 10 -l ${secs}\` in the client ns sends A queries for ${DNS.names} names (n1…n${DNS.names}.${DNS.zone}, in a loop) to the forwarder in the server ns (${ADDR.srv}:${DNS.port}).`,
        `The upstream is dnsmasq in the server ns on 127.0.0.1:${DNS.upstreamPort}, answering *.${DNS.zone} from \`--address\` with TTL 3600 and no cache of its own.`,
        id === 'g'
          ? 'Cached: both forwarders cache (tranproxy `dns.cache: true`, dnsmasq `--cache-size=1000`); the warm-up pass fills the caches.'
          : id === 'h'
            ? `Fake-IP: tranproxy answers from its fake-IP pool (\`dns.fake-ip\`, 198.18.0.0/15), dnsmasq from its own \`--address=/${DNS.zone}/…\`: neither asks upstream.`
            : 'Uncached: tranproxy `dns.cache: false`, dnsmasq `--cache-size=0`: every query is forwarded to the upstream (which runs on the same 2 CPUs for both).',
        'tranproxy is the real gateway process: `tranproxy run --config FILE --firewall none`, the forwarder in its data-plane child (as uid 1337).',
        'Each round starts the variant afresh, runs a 2 s dnsperf warm-up pass (a long-running gateway has its JIT warm), then the measured pass.',
      ],
      variants: [],
      subject: 'tranproxy',
      anchors: ['dnsmasq'],
    },
    [
      { key: 'qps', label: 'queries/s', better: 'higher' },
      { key: 'avg', label: 'avg latency ms', better: 'lower' },
      { key: 'max', label: 'worst latency ms', better: 'lower' },
      { key: 'lost', label: 'lost queries', better: 'lower' },
    ],
  );
  const dnsYaml = [
    'dns:',
    `  listen: ${DNS.port}`,
    `  nameservers: ["127.0.0.1:${DNS.upstreamPort}"]`,
    `  cache: ${id === 'i' ? 'false' : 'true'}`,
    ...(id === 'h' ? ['  fake-ip:', '    enabled: true', '    range: 198.18.0.0/15'] : []),
    '',
  ].join('\n');
  const variants: VariantDef[] = [
    {
      key: 'tranproxy',
      label: 'tranproxy',
      detail: `\`tranproxy run --config FILE --firewall none\` with \`${dnsYaml.trim().replace(/\n\s*/g, ' ')}\``,
      start: async () => {
        const file = join(tmpDir(), `dns-${id}.yaml`);
        writeFileSync(file, dnsYaml);
        chmodSync(file, 0o644);
        const p = await startTranproxy(srv, [
          '--config',
          file,
          '--firewall',
          'none',
          '--listen-port',
          String(PORT.tranproxy),
        ]);
        await waitForListen(srv, DNS.port);
        return p;
      },
    },
    {
      key: 'dnsmasq',
      label: 'dnsmasq',
      detail:
        id === 'h'
          ? `\`dnsmasq --address=/${DNS.zone}/198.18.0.1 --local-ttl=1\` (answers itself)`
          : `\`dnsmasq --server=127.0.0.1#${DNS.upstreamPort} --cache-size=${id === 'i' ? 0 : 1000}\``,
      start: async () => {
        const log = logPath('dnsmasq');
        const args = [
          '-k',
          '--no-resolv',
          '--no-hosts',
          '--pid-file=',
          '--user=root',
          '--bind-interfaces',
          `--listen-address=${ADDR.srv}`,
          '-p',
          String(DNS.port),
          '--log-facility=-',
        ];
        if (id === 'h') args.push(`--address=/${DNS.zone}/198.18.0.1`, '--local-ttl=1');
        else args.push(`--server=127.0.0.1#${DNS.upstreamPort}`, `--cache-size=${id === 'i' ? 0 : 1000}`);
        const p = startLogged(srv, log, 'dnsmasq', args);
        await waitForListen(srv, DNS.port, p, log);
        return { pids: [p.pid], dataPid: p.pid, errorLog: log, stop: async () => void (await p.stop()) };
      },
    },
  ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  const queries = join(tmpDir(), 'dns-queries.txt');
  const run = async (): Promise<void> => {
    writeFileSync(queries, Array.from({ length: DNS.names }, (_, i) => `n${i + 1}.${DNS.zone} A\n`).join(''));
    chmodSync(queries, 0o644);
    const upstream = startDnsUpstream(srv);
    try {
      await alternate(ctx, c, variants, async (v, _proxy, round) => {
        const perf = (l: number) =>
          cli.run('dnsperf', ['-s', ADDR.srv, '-p', String(DNS.port), '-d', queries, '-c', '10', '-l', String(l)], {
            allowFailure: true,
            timeoutMs: (l + 30) * 1000,
          });
        await perf(2); // warm-up: JIT for tranproxy, and for (g) both caches filled
        const r = await perf(secs);
        if (r.status !== 0) throw new Error(`dnsperf failed (${r.status}): ${r.stderr || r.stdout}`);
        const d = parseDnsperf(r.stdout);
        record(c, 'qps', v.key, round, d.qps);
        record(c, 'avg', v.key, round, d.avgMs);
        record(c, 'max', v.key, round, d.maxMs);
        record(c, 'lost', v.key, round, d.lost);
        ctx.log(
          `  [${id}] round ${round} ${v.label.padEnd(10)} ${fmtNum(d.qps)} q/s, avg ${d.avgMs.toFixed(2)} ms, worst ${d.maxMs.toFixed(1)} ms, lost ${d.lost}`,
        );
      });
    } finally {
      await upstream.stop();
    }
  };
  return { c, run };
}
