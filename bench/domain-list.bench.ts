// Compiling a big domain list, phase by phase, in one process (no sockets, no lab): what the
// supervisor does per (re)load (read + parse the file with the config, one trial compile), what
// crosses to the data plane (the lists packed into bytes, the rules as JSON), and what the child
// does (use the packed lists, compile), with CPU and wall time of each phase and the RSS after.
// Run several times; the first round pays the JIT.
// Run: node --import tsx bench/domain-list.bench.ts [ENTRIES] [ROUNDS]   (default 1000000 3)
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../src/config/file.js';
import { domainListText } from './cases/rules.js';
import { compileRules, packedBytes, packRuleLists, reviveRuleLists, type RuleSpec } from '../src/route/index.js';

const entries = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'tpx-bench-list-'));
chmodSync(dir, 0o755);
writeFileSync(join(dir, 'list.txt'), domainListText(entries), { mode: 0o644 });
writeFileSync(join(dir, 't.yaml'), 'rules:\n  - domain-list: list.txt\n    outbound: direct\ndefault: direct\n', {
  mode: 0o600,
});

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
function phase<T>(name: string, fn: () => T, out: string[]): T {
  const c0 = cpu();
  const t0 = performance.now();
  const r = fn();
  out.push(`${name} ${(cpu() - c0).toFixed(2)}/${((performance.now() - t0) / 1000).toFixed(2)}`);
  return r;
}

try {
  for (let round = 1; round <= rounds; round++) {
    const out: string[] = [];
    const c0 = cpu();
    const t0 = performance.now();
    const file = phase('read+parse+check', () => loadConfigFile(join(dir, 't.yaml')), out);
    const packed = phase('pack', () => packRuleLists(file.routeRules), out);
    const bytes = phase('copy (the file the child reads)', () => packedBytes(packed), out);
    const json = JSON.stringify(packed.rules);
    const rules = phase('child: from JSON + revive', () => reviveRuleLists(JSON.parse(json) as RuleSpec[], bytes), out);
    const router = phase('child: compile', () => compileRules(rules, 'direct', []), out);
    const total = `total CPU ${(cpu() - c0).toFixed(2)} s, wall ${((performance.now() - t0) / 1000).toFixed(2)} s`;
    const t1 = performance.now();
    const n = 100_000;
    for (let i = 0; i < n; i++)
      router.route({
        dst: { ip: '192.0.2.1', port: 443, family: 4, domain: `www.x${i}.example.com` },
        src: '10.0.0.2',
        network: 'tcp',
      });
    const perRoute = (((performance.now() - t1) / n) * 1000).toFixed(1);
    const m = process.memoryUsage();
    const mb = (n: number) => (n / 1048576).toFixed(0);
    const mem = `RSS ${mb(m.rss)} MB (heap ${mb(m.heapUsed)}, array buffers ${mb(m.arrayBuffers)}; packed ${mb(bytes.length)})`;
    console.log(`round ${round}: ${total}; ${out.join(', ')} (CPU/wall s); route ${perRoute} µs; ${mem}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
