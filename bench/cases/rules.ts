// (j) Large rule sets: start-up and SIGHUP reload of `tranproxy run` with a big domain list.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds, descendants, rssKb, startLogged, waitForLog } from '../lib/proc.js';
import { newCase, record, type CaseResult } from '../lib/report.js';
import { type Ctx, logPath, MAIN, NODE, PORT, tmpDir } from '../lib/runner.js';

/** A domain list of `n` entries: half bare names, a quarter domain:, 23% full:, 2% keyword: (deterministic). */
export function domainListText(n: number): string {
  let seed = 12345;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const word = (): string => Math.floor(rnd() * 36 ** 6).toString(36);
  const tlds = ['com', 'net', 'org', 'cn', 'io'];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const d = `${word()}${i}.${tlds[i % 5]}`;
    out.push(r < 0.5 ? d : r < 0.75 ? `domain:${d}` : r < 0.98 ? `full:www.${d}` : `keyword:${word()}${i}`);
  }
  return `${out.join('\n')}\n`;
}

export function ruleSetCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
  const srv = ctx.srv!;
  const sizes = [200_000, 1_000_000];
  const c = newCase(
    {
      id: 'j',
      title: '(j) Start-up and SIGHUP reload with a large domain list',
      method: [
        '`tranproxy run --config FILE --firewall none` in a lab ns with one rule `domain-list: list.txt` → direct; the list has 200,000 or 1,000,000 entries',
        '(50% bare names, 25% `domain:`, 23% `full:`, 2% `keyword:`, generated). "ready" is the wall time from spawn to the ready line; "reload" from SIGHUP to the',
        '`reloaded:` line (the new generation compiled and its data plane started); CPU is utime+stime of the supervisor and of the data-plane child',
        '(/proc/PID/stat) at ready — less sensitive to other load than wall time; RSS is VmRSS after ready and after the reload. No anchor: the goal is',
        'a million entries in under 2 s and under 300 MB.',
      ],
      variants: sizes.map((n) => ({
        key: `n${n}`,
        label: `${n.toLocaleString('en-US')} entries`,
        detail: `list of ${n.toLocaleString('en-US')} lines`,
      })),
      subject: `n${sizes[1]}`,
      anchors: [],
    },
    [
      { key: 'ready', label: 'start to ready s', better: 'lower' },
      { key: 'cpuSup', label: 'supervisor CPU s at ready', better: 'lower' },
      { key: 'cpuChild', label: 'child CPU s at ready', better: 'lower' },
      { key: 'reload', label: 'SIGHUP to reloaded s', better: 'lower' },
      { key: 'rssSup', label: 'supervisor RSS MB', better: 'lower' },
      { key: 'rssChild', label: 'child RSS MB', better: 'lower' },
      { key: 'rssSupReload', label: 'supervisor RSS MB after reload', better: 'lower' },
    ],
  );
  const run = async (): Promise<void> => {
    for (let round = 1; round <= ctx.opts.rounds; round++) {
      for (const n of sizes) {
        const key = `n${n}`;
        const dir = mkdtempSync(join(tmpDir(), 'rules-'));
        chmodSync(dir, 0o755);
        writeFileSync(join(dir, 'list.txt'), domainListText(n));
        writeFileSync(
          join(dir, 'tranproxy.yaml'),
          'rules:\n  - domain-list: list.txt\n    outbound: direct\ndefault: direct\n',
        );
        const log = logPath('tranproxy-rules');
        const t0 = Date.now();
        const p = startLogged(srv, log, NODE, [
          MAIN,
          'run',
          '--config',
          join(dir, 'tranproxy.yaml'),
          '--firewall',
          'none',
          '--listen-port',
          String(PORT.tranproxy),
        ]);
        try {
          await waitForLog(p, log, /^tranproxy:? ready:.*$/m, 120_000);
          const ready = (Date.now() - t0) / 1000;
          const kids = descendants(p.pid);
          record(c, 'ready', key, round, ready);
          record(c, 'cpuSup', key, round, cpuSeconds(p.pid));
          record(
            c,
            'cpuChild',
            key,
            round,
            kids.reduce((s, k) => s + cpuSeconds(k), 0),
          );
          record(c, 'rssSup', key, round, rssKb(p.pid) / 1024);
          record(c, 'rssChild', key, round, kids.reduce((s, k) => s + rssKb(k), 0) / 1024);
          const t1 = Date.now();
          process.kill(p.pid, 'SIGHUP');
          await waitForLog(p, log, /^tranproxy:? reloaded:.*$/m, 120_000);
          record(c, 'reload', key, round, (Date.now() - t1) / 1000);
          record(c, 'rssSupReload', key, round, rssKb(p.pid) / 1024);
          ctx.log(
            `  [j] round ${round} ${String(n).padStart(7)} entries: ready ${ready.toFixed(1)} s (CPU ${cpuSeconds(p.pid).toFixed(2)} s + child), reload ${((Date.now() - t1) / 1000).toFixed(1)} s`,
          );
        } catch (e) {
          c.errors.push(`round ${round}, ${n} entries: ${(e as Error).message.split('\n')[0]}`);
        } finally {
          await p.stop('SIGTERM');
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  };
  return { c, run };
}
