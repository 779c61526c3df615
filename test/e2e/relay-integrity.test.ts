// Issue 8 (found by scripts/soak.ts): every byte of an echoed bulk transfer comes back when
// the client half-closes and the server answers the tail after the client's FIN. The JS
// relay (then used for inspected flows: header injection, now only with --relay js) used to destroy both
// sockets as soon as both EOFs were read, dropping what was still queued for the client:
// ~1 % of 4 MiB echoes came back tens of KiB short, logged as close=eof.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peerPath, startTranproxy, withLab } from '../helpers/lab.js';
import { stopGracefully } from '../helpers/procs.js';

interface Stats {
  bulk?: { ok: number; err: number; bytes: number };
  errors: Record<string, number>;
}

for (const [label, extra, carrier] of [
  ['JS relay', ['--relay', 'js', '-H', 'X-Tpx: 1'], undefined],
  ['header injection in the engine (non-HTTP bytes: passthrough, then spliced)', ['-H', 'X-Tpx: 1'], 'engine'],
] as const) {
  test(`bulk echoes with half-close through REDIRECT, ${label}: every byte back, every time`, async () => {
    await withLab(async (lab) => {
      const app = lab.addHost('app');
      const server = lab.addHost('server');
      lab.link(app, server, { a: ['10.88.1.1/24'], b: ['10.88.1.2/24'] });
      const srv = server.spawn('python3', ['-u', peerPath('echo_async.py'), '7000', '0.0.0.0']);
      await srv.waitForOutput(/^listening/m);
      const proxy = await startTranproxy(app, ['run', '-P', '7000', '--family', 'ipv4', ...extra]);
      // 2 connections at a time, each sends 4 MiB + FIN and checks the sha256 of the echo.
      const client = app.spawn(process.execPath, [
        peerPath('soak_client.mjs'),
        JSON.stringify({
          bulk: { host: '10.88.1.2', port: 7000, conns: 2, bytes: 4 << 20 },
          durationMs: 15_000,
          reportMs: 60_000,
        }),
      ]);
      const line = await client.waitForOutput(/^stats .*$/m, 120_000);
      const stats = JSON.parse(line.slice(6)) as Stats;
      console.log(
        `# ${label}: ${stats.bulk?.ok ?? 0} transfers of 4 MiB intact, ${stats.bulk?.err ?? 0} not ${JSON.stringify(stats.errors)}`,
      );
      assert.equal(stats.bulk?.err ?? 0, 0, JSON.stringify(stats.errors));
      assert.ok((stats.bulk?.ok ?? 0) >= 50, 'enough transfers to catch a rare loss');
      if (carrier) assert.match(proxy.output(), /conn .*relay=engine/, 'the engine carried them');
      else assert.doesNotMatch(proxy.output(), /conn .*relay=/, 'the JS relay carried them');
      await stopGracefully(proxy);
    });
  });
}
