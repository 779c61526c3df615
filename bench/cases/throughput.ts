import { haproxyTproxy } from '../lib/configs.js';
import { readLog } from '../lib/proc.js';
import { addBestOf, newCase, record, type CaseResult } from '../lib/report.js';
import {
  captureArgs,
  ADDR,
  alternate,
  BEST_HAPROXY,
  cpuOf,
  type Ctx,
  HAPROXY,
  haproxyPair,
  iperf,
  MEM_METRICS,
  MEM_NOTE,
  PORT,
  recordIdleMemory,
  SPLICE_NOTE,
  startHaproxy,
  startIperfServer,
  startTranproxy,
  TP,
  tpCmd,
  UID,
  type VariantDef,
} from '../lib/runner.js';
import { startHaproxyRedirect } from '../lib/anchors.js';

export function throughputCase(ctx: Ctx, id: 'a' | 'b'): { c: CaseResult; run: () => Promise<void> } {
  const tp = id === 'b';
  const title = tp ? '(b) Bulk TCP through TPROXY on a gateway (iperf3)' : '(a) Bulk TCP through REDIRECT (iperf3)';
  const { iperfSecs: secs } = ctx.opts;
  const c = newCase(
    {
      id,
      title,
      method: tp
        ? [
            `client ns → gateway ns → server ns over two veth pairs; the gateway captures port ${PORT.iperf} in PREROUTING with TPROXY`,
            `(\`tranproxy rules\` plan: mangle prerouting \`tproxy to :PORT\`, fwmark → local route table). iperf3 ${secs} s per test, 1 stream and \`-P 4\`;`,
            "both proxies run as root on the gateway and connect upstream from the client's own address (tranproxy: `--preserve-source`, its default in this mode;",
            'HAProxy: `source 0.0.0.0 usesrc clientip`). "no proxy" is plain forwarding through the same gateway.',
          ]
        : [
            `client ns ⇄ server ns over one veth pair; the client's own traffic to port ${PORT.iperf} is captured in OUTPUT with REDIRECT`,
            `(nft \`redirect to :PORT\`); each proxy runs in the client ns under its own uid, excluded from capture. iperf3 ${secs} s per test, 1 stream and \`-P 4\`.`,
          ],
      variants: [],
      subject: 'tranproxy',
      anchors: [BEST_HAPROXY.key, 'none'],
    },
    [
      { key: 'g1', label: '1 stream Gbit/s', better: 'higher' },
      { key: 'g4', label: '4 streams Gbit/s', better: 'higher' },
      { key: 'cpu1', label: 'proxy CPU s/GB, 1 stream', better: 'lower' },
      { key: 'cpu4', label: 'proxy CPU s/GB, 4 streams', better: 'lower' },
      ...MEM_METRICS,
    ],
  );
  const client = tp ? ctx.tcli! : ctx.cli!;
  const server = tp ? ctx.tsrv! : ctx.srv!;
  const proxyHost = tp ? ctx.gw! : ctx.cli!;
  const dst = tp ? ADDR.tsrv : ADDR.srv;
  const variants: VariantDef[] = tp
    ? [
        {
          key: 'tranproxy',
          label: 'tranproxy',
          detail: `${tpCmd(TP.tproxy())} (supervisor + data-plane child, as root)`,
          start: () => startTranproxy(proxyHost, TP.tproxy()),
        },
        ...haproxyPair({
          key: 'haproxy',
          label: HAPROXY,
          detail: `\`mode tcp\`, \`bind :${PORT.haproxy} transparent\`, \`source 0.0.0.0 usesrc clientip\`, \`server s 0.0.0.0:0\`, as root; rules: \`tranproxy rules apply --mode tproxy --capture prerouting --listen-port ${PORT.haproxy} -P ${PORT.iperf}\``,
          start: (o) =>
            startHaproxy(
              proxyHost,
              haproxyTproxy(PORT.haproxy, 9000, o),
              PORT.haproxy,
              undefined,
              captureArgs(PORT.iperf, PORT.haproxy, 'tproxy'),
            ),
        }),
        { key: 'none', label: 'no proxy', detail: 'routed through the gateway, no rules' },
      ]
    : [
        {
          key: 'tranproxy',
          label: 'tranproxy',
          detail: `${tpCmd(TP.redirect())} (supervisor as root, data-plane child as uid ${UID.tranproxy})`,
          start: () => startTranproxy(proxyHost, TP.redirect()),
        },
        ...haproxyPair({
          key: 'haproxy',
          label: HAPROXY,
          detail: `\`mode tcp\`, \`server s 0.0.0.0:0\` (follows SO_ORIGINAL_DST), as uid ${UID.haproxy}; rules: \`tranproxy rules apply --proxy-user ${UID.haproxy}:${UID.haproxy} --listen-port ${PORT.haproxy} -P ${PORT.iperf}\``,
          start: (o) => startHaproxyRedirect(proxyHost, PORT.iperf, o),
        }),
        { key: 'none', label: 'no proxy', detail: 'no rules' },
      ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  c.notes.push(
    tp
      ? `Both proxies really relay from the client's address: after every proxied test the runner checks that the iperf3 server logged the connection as coming from ${ADDR.tcli}.`
      : `HAProxy ${'2.6'}'s \`server s 0.0.0.0:0\` does follow SO_ORIGINAL_DST here: every test through it reaches the iperf3 server (nothing listens on ${PORT.iperf} in the client ns, and 0.0.0.0:0 itself is not connectable), and its CPU time shows it relayed the bytes.`,
    'A proxied test only counts if the proxy used CPU in proportion (≥ 0.05 s per second of test): traffic that bypassed the proxy fails the round instead of flattering it.',
    'The no-proxy rows vary most: the kernel path alone is fast enough that the load generators and other work on the 2 CPUs decide it.',
    SPLICE_NOTE,
    MEM_NOTE,
  );
  const run = async (): Promise<void> => {
    const srv = await startIperfServer(server);
    try {
      await alternate(ctx, c, variants, async (v, proxy, round) => {
        recordIdleMemory(c, v.key, round, proxy);
        const line: string[] = [];
        for (const streams of [1, 4]) {
          const cpu0 = cpuOf(proxy);
          const r = await iperf(client, server, srv, dst, streams, secs);
          const cpu = cpuOf(proxy) - cpu0;
          if (proxy && cpu < 0.05 * secs)
            throw new Error(`the proxy used ${cpu.toFixed(2)} s of CPU: the traffic did not go through it`);
          if (tp && proxy) {
            // The proxies connect upstream from the client's own address: the server must see it.
            const from = [...readLog(srv.log).matchAll(/Accepted connection from ([\d.]+)/g)].pop()?.[1];
            if (from !== ADDR.tcli)
              throw new Error(
                `the server saw the test come from ${from ?? 'nowhere'}, not from the client ${ADDR.tcli}`,
              );
          }
          record(c, `g${streams}`, v.key, round, r.gbps);
          if (proxy) record(c, `cpu${streams}`, v.key, round, cpu / (r.bytes / 1e9));
          line.push(
            `${streams}×: ${r.gbps.toFixed(2)} Gbit/s${proxy ? ` (proxy ${cpu.toFixed(2)} CPU s, ${(cpu / (r.bytes / 1e9)).toFixed(2)} s/GB)` : ''}`,
          );
        }
        ctx.log(`  [${id}] round ${round} ${v.label.padEnd(24)} ${line.join('  ')}`);
      });
    } finally {
      await srv.proc.stop();
    }
    addBestOf(c, BEST_HAPROXY.key, BEST_HAPROXY.label, ['haproxy', 'haproxy-splice']);
  };
  return { c, run };
}

/** (f) is read off the CPU columns of (a) and (b). */
export function cpuCase(from: CaseResult[]): CaseResult {
  const c = newCase(
    {
      id: 'f',
      title: '(f) CPU seconds per GB relayed',
      method: [
        'utime+stime of every process of the proxy (/proc/PID/stat, tranproxy: supervisor + data-plane child) over each iperf3 test of (a) and (b),',
        '÷ GB received by the iperf3 server. Kernel work done in softirq context on behalf of the proxy is not attributed to it.',
        'This is the figure least sensitive to other load on the machine: throughput depends on how much of the 2 CPUs each proxy gets',
        '(a proxy that got 2.7 CPU s in a 5 s test was waiting for a CPU, not saturated), CPU per byte much less.',
      ],
      variants: from[0]?.variants.filter((v) => v.key !== 'none') ?? [],
      subject: 'tranproxy',
      anchors: [BEST_HAPROXY.key],
    },
    from.flatMap((src) => [
      { key: `${src.id}1`, label: `(${src.id}) 1 stream s/GB`, better: 'lower' as const },
      { key: `${src.id}4`, label: `(${src.id}) 4 streams s/GB`, better: 'lower' as const },
    ]),
  );
  for (const src of from) {
    for (const streams of [1, 4]) {
      const m = src.metrics.find((x) => x.key === `cpu${streams}`)!;
      for (const [variant, values] of m.values)
        for (const [round, v] of values) record(c, `${src.id}${streams}`, variant, round, v);
    }
  }
  return c;
}
