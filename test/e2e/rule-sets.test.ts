// Issue 17 item 7: a rule set from a URL on the gateway. An HTTP server in a lab namespace
// serves the list; the rule applies; the server changes the list and after the interval the
// new rule applies without a restart; with the server down the last good copy is kept, also
// across a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, gatewayRunArgs, withGatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';

const { direct: DIRECT_SRV, lanClient: LAN_CLIENT } = gatewayLabAddresses(83);

/** The client address the echo server saw for `name` (resolved to the direct server), or undefined when refused. */
async function reach(lan: Host, name: string): Promise<string | undefined> {
  const r = await lan.run(
    'curl',
    ['-sS', '--max-time', '5', '--resolve', `${name}:80:${DIRECT_SRV}`, `http://${name}/`],
    { allowFailure: true },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as { client: { address: string } }).client.address : undefined;
}

test('rule set from a URL: applied, refreshed on its interval without a restart, last good copy kept when the server is down', async () => {
  await withGatewayLab({ net: 83, tmpPrefix: 'tpx-rs-' }, async (g) => {
    await startPeer(g.direct, 'echo_headers', 80);
    const www = join(g.tmp, 'www');
    mkdirSync(www);
    writeFileSync(join(www, 'block.txt'), '# served by the lab\nfull:a.lists.test\n');
    const http = g.direct.spawn('python3', ['-m', 'http.server', '8000', '--bind', DIRECT_SRV, '--directory', www]);
    await waitForPort(g.direct, 8000);
    const config = join(g.tmp, 'gw.yaml');
    writeFileSync(
      config,
      [
        'rule-sets:',
        '  block:',
        `    url: http://${DIRECT_SRV}:8000/block.txt`,
        '    interval: 2s',
        '    format: domain',
        'rules:',
        '  - rule-set: block',
        '    outbound: reject',
        'default: direct',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const run = [...gatewayRunArgs(g, []), '--config', config];
    let proxy = await startTranproxy(g.gw, run);
    await proxy.waitForOutput(/rule set block: fetched 1 entries/);
    assert.equal(await reach(g.lan, 'a.lists.test'), undefined, 'a is in the list: rejected');
    await proxy.waitForOutput(/conn .*domain=a\.lists\.test via=reject route=rules\[0\]/);
    assert.equal(await reach(g.lan, 'b.lists.test'), LAN_CLIENT, 'b is not: direct');
    assert.equal(
      readFileSync(join(g.tmp, 'rule-sets', 'block.txt'), 'utf8'),
      '# served by the lab\nfull:a.lists.test\n',
    );

    writeFileSync(join(www, 'block.txt'), 'full:b.lists.test\n');
    await proxy.waitForOutput(/rule set block: new rules applied/, 15_000);
    assert.equal(await reach(g.lan, 'a.lists.test'), LAN_CLIENT, 'a left the list');
    assert.equal(await reach(g.lan, 'b.lists.test'), undefined, 'b joined it');
    await proxy.waitForOutput(/conn .*domain=b\.lists\.test via=reject route=rules\[0\]/);

    await http.stop();
    await proxy.waitForOutput(/rule set block: refresh failed, keeping the last good copy from \S+/, 15_000);
    assert.equal(await reach(g.lan, 'b.lists.test'), undefined, 'the last good copy still applies');

    // A restart with the server still down starts from the copy on disk.
    await proxy.stop();
    proxy = await startTranproxy(g.gw, run);
    await proxy.waitForOutput(/rule set block: using the copy on disk from \S+/);
    assert.equal(await reach(g.lan, 'b.lists.test'), undefined, 'rejected from the copy after the restart');
    assert.equal(await reach(g.lan, 'a.lists.test'), LAN_CLIENT);
  });
});
