// Gateway anchors (l, m, n): bulk and connections/s from a LAN client through a gateway that
// sends every captured flow through an upstream node — tranproxy against what a gateway user
// runs instead: ss-redir (shadowsocks-libev) for a Shadowsocks node, redsocks for a SOCKS5 node.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { fmtNum } from '../lib/parse.js';
import { readLog, startLogged, waitForListen, workCost } from '../lib/proc.js';
import { addBestOf, newCase, record, type CaseResult } from '../lib/report.js';
import {
  alternate,
  cpuOf,
  type Ctx,
  iperf,
  logPath,
  MEM_METRICS,
  CPU_PER_K_NOTE,
  MEM_NOTE,
  NPROC,
  PORT,
  recordIdleMemory,
  type RunningProxy,
  rulesRemove,
  startHttpServer,
  startIperfServer,
  startTranproxy,
  tmpDir,
  tpCommon,
  tranproxyCli,
  type VariantDef,
  wrk,
} from '../lib/runner.js';

/** LAN client → gateway → WAN, where the node and the target each sit behind the gateway on a link of their own. */
const GW = {
  cli: '198.51.100.1',
  lan: '198.51.100.2',
  wanNode: '203.0.113.1',
  node: '203.0.113.2',
  wanTarget: '203.0.113.129',
  target: '203.0.113.130',
} as const;
const NODE_PORT = { aes: 8388, chacha: 8389, socks: 1080 } as const;
const LISTEN = { ssRedir: 15006, redsocks: 15007 } as const;
const SS_PASSWORD = 'bench-password';

export interface GatewayHosts {
  cli: Host;
  gw: Host;
  node: Host;
  target: Host;
}

export function buildGatewayLab(lab: Lab, tune: (h: Host) => void): GatewayHosts {
  const h: GatewayHosts = {
    cli: lab.addHost('ncli'),
    gw: lab.addHost('ngw'),
    node: lab.addHost('nnode'),
    target: lab.addHost('ntgt'),
  };
  lab.link(h.cli, h.gw, { a: [`${GW.cli}/24`], b: [`${GW.lan}/24`] });
  lab.link(h.gw, h.node, { a: [`${GW.wanNode}/25`], b: [`${GW.node}/25`] });
  lab.link(h.gw, h.target, { a: [`${GW.wanTarget}/25`], b: [`${GW.target}/25`] });
  h.cli.addRoute('default', GW.lan);
  h.node.addRoute('default', GW.wanNode);
  h.target.addRoute('default', GW.wanTarget);
  h.gw.enableForwarding();
  for (const x of Object.values(h)) tune(x);
  return h;
}

/** The capture every variant gets: the LAN's connections to the iperf3 and HTTP ports, REDIRECT in PREROUTING. */
const CAPTURE = [
  '--mode',
  'redirect',
  '--capture',
  'prerouting',
  '--source-cidr',
  `${GW.cli}/24`,
  '-P',
  String(PORT.iperf),
  '-P',
  String(PORT.http),
  '--family',
  'ipv4',
];

/** A program on the gateway listening on `port`, then `tranproxy rules apply` with the same capture as tranproxy. */
async function startRedirector(
  gw: Host,
  name: string,
  cmd: string,
  args: string[],
  port: number,
): Promise<RunningProxy> {
  const log = logPath(name);
  const p = startLogged(gw, log, cmd, args);
  try {
    await waitForListen(gw, port, p, log);
    await tranproxyCli(gw, ['rules', 'apply', ...CAPTURE, '--listen-port', String(port)]);
  } catch (e) {
    await rulesRemove(gw);
    await p.stop();
    throw e;
  }
  return {
    pids: [p.pid],
    dataPid: p.pid,
    errorLog: log,
    stop: async () => {
      await rulesRemove(gw);
      await p.stop();
    },
  };
}

type Node = 'aes' | 'chacha' | 'socks';
const METHOD = { aes: 'aes-256-gcm', chacha: 'chacha20-ietf-poly1305' } as const;

function ssLink(method: string): string {
  const user = Buffer.from(`${method}:${SS_PASSWORD}`).toString('base64url');
  return `ss://${user}@${GW.node}:${NODE_PORT[method === METHOD.aes ? 'aes' : 'chacha']}#bench`;
}

function variantsFor(node: Node, h: GatewayHosts): VariantDef[] {
  const upstream = node === 'socks' ? `socks5://${GW.node}:${NODE_PORT.socks}` : ssLink(METHOD[node]);
  const tpArgs = (): string[] => [...CAPTURE, '--listen-port', String(PORT.tranproxy), '--upstream', upstream];
  // Like cases c and d: with nproc engine threads and with its default one; 'tranproxy' is the better per metric.
  const tranproxy: VariantDef[] = [
    {
      key: 'tranproxy-n',
      label: `tranproxy, ${NPROC} workers`,
      detail: `\`tranproxy run ${tpArgs().join(' ')} ${tpCommon().join(' ')}\` on the gateway, as root`,
      start: () => startTranproxy(h.gw, [...tpArgs(), ...tpCommon()]),
    },
    {
      key: 'tranproxy-1',
      label: 'tranproxy, 1 worker',
      detail: `\`tranproxy run ${tpArgs().join(' ')}\` (its default: one worker) on the gateway, as root`,
      start: () => startTranproxy(h.gw, tpArgs()),
    },
  ];
  const anchor: VariantDef =
    node === 'socks'
      ? {
          key: 'redsocks',
          label: 'redsocks',
          detail: `redsocks 0.5 (\`type = socks5\`, \`redirector = iptables\`, i.e. SO_ORIGINAL_DST; one process) on the gateway, listening on :${LISTEN.redsocks}; rules: \`tranproxy rules apply ${CAPTURE.join(' ')} --listen-port ${LISTEN.redsocks}\``,
          start: () => {
            const conf = join(tmpDir(), 'redsocks.conf');
            writeFileSync(
              conf,
              `base {\n  log_debug = off;\n  log_info = off;\n  log = stderr;\n  daemon = off;\n  redirector = iptables;\n  rlimit_nofile = 20000;\n  redsocks_conn_max = 8000;\n}\n` +
                `redsocks {\n  local_ip = 0.0.0.0;\n  local_port = ${LISTEN.redsocks};\n  ip = ${GW.node};\n  port = ${NODE_PORT.socks};\n  type = socks5;\n}\n`,
              { mode: 0o644 },
            );
            return startRedirector(h.gw, 'redsocks', 'redsocks', ['-c', conf], LISTEN.redsocks);
          },
        }
      : {
          key: 'ss-redir',
          label: 'ss-redir',
          detail: `shadowsocks-libev \`ss-redir -s ${GW.node} -p ${NODE_PORT[node]} -m ${METHOD[node]} -b 0.0.0.0 -l ${LISTEN.ssRedir}\` (one process) on the gateway; rules: \`tranproxy rules apply ${CAPTURE.join(' ')} --listen-port ${LISTEN.ssRedir}\``,
          start: () =>
            startRedirector(
              h.gw,
              'ss-redir',
              'ss-redir',
              [
                '-s',
                GW.node,
                '-p',
                String(NODE_PORT[node]),
                '-k',
                SS_PASSWORD,
                '-m',
                METHOD[node],
                '-b',
                '0.0.0.0',
                '-l',
                String(LISTEN.ssRedir),
                '-n',
                '20000',
              ],
              LISTEN.ssRedir,
            ),
        };
  return [...tranproxy, anchor];
}

/** The node's server processes in the node ns: two ss-servers (one per cipher) or microsocks. */
async function startNode(h: GatewayHosts, node: Node): Promise<() => Promise<void>> {
  const procs =
    node === 'socks'
      ? [{ port: NODE_PORT.socks, args: ['microsocks', '-i', '0.0.0.0', '-p', String(NODE_PORT.socks)] }]
      : [
          {
            port: NODE_PORT[node],
            args: [
              'ss-server',
              '-s',
              '0.0.0.0',
              '-p',
              String(NODE_PORT[node]),
              '-k',
              SS_PASSWORD,
              '-m',
              METHOD[node],
              '-n',
              '20000',
            ],
          },
        ];
  const started: LabProcess[] = [];
  try {
    for (const p of procs) {
      const log = logPath(p.args[0]!);
      const proc = startLogged(h.node, log, p.args[0]!, p.args.slice(1));
      started.push(proc);
      await waitForListen(h.node, p.port, proc, log);
    }
  } catch (e) {
    for (const p of started) await p.stop();
    throw e;
  }
  return async () => {
    for (const p of started) await p.stop();
  };
}

const SOCKS_NOTE =
  'Bulk through this node is slow for both gateways (0.07–0.19 Gbit/s when this case was added, against 0.6–0.9 Gbit/s for ss-redir through ss-server): ' +
  'most likely the node, microsocks (a thread per connection), caps it, not the gateway, so the bulk ratio says little here; conn/s and the ' +
  "gateway's CPU per GB tell the gateways apart.";

const CASE_TITLE: Record<Node, string> = {
  aes: 'Shadowsocks node, aes-256-gcm: tranproxy vs ss-redir',
  chacha: 'Shadowsocks node, chacha20-ietf-poly1305: tranproxy vs ss-redir',
  socks: 'SOCKS5 node (microsocks): tranproxy vs redsocks',
};

/** One gateway case: `node` is the upstream node kind; `id` its letter. */
export function gatewayCase(
  ctx: Ctx,
  h: GatewayHosts,
  id: string,
  node: Node,
): { c: CaseResult; run: () => Promise<void> } {
  const secs = ctx.opts.quick ? 1 : 3;
  const variants = variantsFor(node, h);
  const anchor = variants.at(-1)!.key;
  const nodeDesc =
    node === 'socks'
      ? `microsocks on ${GW.node}:${NODE_PORT.socks} (no auth)`
      : `\`ss-server -m ${METHOD[node]}\` on ${GW.node}:${NODE_PORT[node]}`;
  const c = newCase(
    {
      id,
      title: `(${id}) Gateway through a ${CASE_TITLE[node]}`,
      method: [
        `LAN client ns (${GW.cli}) → gateway ns → two WAN links: the node ns (${nodeDesc}) and the target ns (${GW.target}: iperf3 -s and the nginx HTTP server).`,
        `The gateway captures the LAN's connections to ports ${PORT.iperf} and ${PORT.http} (REDIRECT in PREROUTING, the same \`tranproxy rules\` for every variant) and sends them through the node;`,
        `after a 1 s iperf3 warm-up, iperf3 ${secs} s, 1 stream and \`-P 4\`; then wrk \`-t1 -c50 -d${secs}s -H "Connection: close"\` to http://${GW.target}/ after a 1 s warm-up (one node connection per request).`,
        `A proxied run only counts if the target saw the iperf3 test come from the node's address (${GW.node}), not the client's (${GW.cli}).`,
        'What the same client → gateway → server path does without any proxy: the no-proxy row of case (b).',
      ],
      variants: variants.map(({ key, label, detail }) => ({ key, label, detail })),
      subject: 'tranproxy',
      anchors: [anchor],
    },
    [
      { key: 'g1', label: '1 stream Gbit/s', better: 'higher' },
      { key: 'g4', label: '4 streams Gbit/s', better: 'higher' },
      { key: 'cps', label: 'conn/s', better: 'higher' },
      { key: 'p99', label: 'conn p99 ms', better: 'lower' },
      { key: 'cpu1', label: 'gateway CPU s/GB, 1 stream', better: 'lower' },
      { key: 'cpuk', label: 'gateway CPU s per 1k conn', better: 'lower' },
      ...MEM_METRICS,
    ],
  );
  c.notes.push(
    "Only the gateway's proxy is measured for CPU and memory; the node's server (and its CPU) is the same for both. All of it shares the machine's CPUs.",
    CPU_PER_K_NOTE,
    MEM_NOTE,
  );
  if (node === 'socks') c.notes.push(SOCKS_NOTE);
  const url = `http://${GW.target}/`;
  const run = async (): Promise<void> => {
    const stopNode = await startNode(h, node);
    const srv = await startIperfServer(h.target);
    const http = await startHttpServer(h.target);
    try {
      await alternate(ctx, c, variants, async (v, proxy, round) => {
        recordIdleMemory(c, v.key, round, proxy);
        const line: string[] = [];
        await iperf(h.cli, h.target, srv, GW.target, 1, 1); // warm-up (JIT, node connections), not measured
        for (const streams of [1, 4]) {
          const cpu0 = cpuOf(proxy);
          const r = await iperf(h.cli, h.target, srv, GW.target, streams, secs);
          const cpu = cpuOf(proxy) - cpu0;
          // Through the node, the target sees the node's address; without rules, the client's. (No CPU
          // floor here: redsocks splices, so a relay that did carry the bytes can use almost no CPU.)
          const from = [...readLog(srv.log).matchAll(/Accepted connection from ([\d.]+)/g)].pop()?.[1];
          const want = proxy ? GW.node : GW.cli;
          if (from !== want) throw new Error(`the target saw the test come from ${from ?? 'nowhere'}, not ${want}`);
          record(c, `g${streams}`, v.key, round, r.gbps);
          if (proxy && streams === 1) record(c, 'cpu1', v.key, round, cpu / (r.bytes / 1e9));
          line.push(`${streams}×: ${r.gbps.toFixed(2)} Gbit/s${proxy ? ` (${cpu.toFixed(2)} CPU s)` : ''}`);
        }
        await wrk(h.cli, url, 1, true);
        const {
          result: w,
          cpuPerK,
          detail,
        } = await workCost(
          proxy?.pids ?? [],
          () => wrk(h.cli, url, secs, true),
          (r) => r.requests,
        );
        if (detail) ctx.log(`  [${id}] ${v.label}: ${detail}`);
        if (w.errors + w.non2xx > 0.01 * w.requests)
          throw new Error(`wrk: ${w.errors} socket errors and ${w.non2xx} non-2xx responses in ${w.requests} requests`);
        record(c, 'cps', v.key, round, w.rps);
        if (proxy) record(c, 'cpuk', v.key, round, cpuPerK);
        record(c, 'p99', v.key, round, w.p99ms);
        ctx.log(
          `  [${id}] round ${round} ${v.label.padEnd(10)} ${line.join('  ')}  ${fmtNum(w.rps)} conn/s, p99 ${fmtNum(w.p99ms)} ms`,
        );
      });
    } finally {
      await http.stop('SIGQUIT');
      await srv.proc.stop();
      await stopNode();
    }
    addBestOf(c, 'tranproxy', 'tranproxy at its best', ['tranproxy-n', 'tranproxy-1']);
  };
  return { c, run };
}
