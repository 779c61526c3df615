// Test-only entry for test/e2e/udp-tproxy.test.ts: runs INSIDE a lab netns (the listener must
// live where the TPROXY rules are). Applies a TPROXY prerouting plan for TCP+UDP, starts
// startUdpTproxy, prints `ready` on stdout; on SIGTERM closes and removes the rules.
// Commands on stdin, one per line: `stats` prints `stats {json}`. On exit it prints
// `stopped fds-before=N fds-after=M` (fd counts around startUdpTproxy … close()).
//   node --import tsx udp-tproxy-runner.ts '{"port":15001,"families":[4,6],...}'
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { applyPlan, removeRules } from '../../src/firewall/apply.js';
import type { CapturePlan } from '../../src/firewall/plan.js';
import { createLogger } from '../../src/observe/log.js';
import type { UdpRecvBackend } from '../../src/kernel/udp-tproxy.js';
import { startUdpTproxy } from '../../src/udp/index.js';

export interface RunnerConfig {
  port: number;
  families: (4 | 6)[];
  idleTimeoutMs: number;
  mark?: number;
  backend?: UdpRecvBackend;
  /** Captured UDP/TCP destination ports (inclusive ranges). */
  ports: [number, number][];
  inInterfaces?: string[];
  /** Apply the firewall plan (default true). */
  rules?: boolean;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as RunnerConfig;
const log = createLogger('text', (line) => process.stderr.write(line));

const plan: CapturePlan = {
  mode: 'tproxy',
  capture: ['prerouting'],
  families: cfg.families.map((f) => (f === 4 ? 'ipv4' : 'ipv6')),
  protocols: ['tcp', 'udp'],
  proxyPort: cfg.port,
  includePorts: cfg.ports.map(([from, to]) => ({ from, to })),
  excludePorts: [],
  includeDestinations: [],
  excludeDestinations: [],
  sourceCidrs: [],
  inInterfaces: cfg.inInterfaces ?? [],
  excludeUids: [],
  excludeGids: [],
  bypassMark: cfg.mark ?? 0x539,
  tproxyMark: 0x1,
  tproxyTable: 100,
};

const fdsBefore = readdirSync('/proc/self/fd').length;
// Proxy ready before rules (the seed's start order): no datagram is diverted to nothing.
const udp = await startUdpTproxy({
  port: cfg.port,
  families: cfg.families,
  idleTimeoutMs: cfg.idleTimeoutMs,
  mark: cfg.mark,
  backend: cfg.backend,
  log,
});
if (cfg.rules !== false) applyPlan(plan, 'nft');
process.stdout.write(`ready backends=${udp.listeners.map((l) => `${l.family}:${l.backend}`).join(',')}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stats') process.stdout.write(`stats ${JSON.stringify({ flows: udp.flows, ...udp.stats })}\n`);
});

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    try {
      if (cfg.rules !== false) removeRules();
      await udp.close();
      // Everything startUdpTproxy opened (listeners, workers, flows, reply sockets) is closed.
      process.stdout.write(`stopped fds-before=${fdsBefore} fds-after=${readdirSync('/proc/self/fd').length}\n`);
      process.exit(0);
    } catch (e) {
      process.stderr.write(`stop failed: ${(e as Error).message}\n`);
      process.exit(1);
    }
  })();
});
