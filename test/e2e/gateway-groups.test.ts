// Node groups on the gateway: a fallback group of two real SOCKS5 nodes (microsocks) moves to
// the second when the first node process stops, and back when it returns; the state is read
// from the admin API's /groups, the probes go to the remote's HTTP server through each node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, gatewayRunArgs, withGatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';

const { node: NODE_IP, remote: REMOTE, nodeSideOfRemote: NODE_SIDE_OF_REMOTE } = gatewayLabAddresses(93);

async function microsocks(node: Host, port: number): Promise<LabProcess> {
  const p = node.spawn('microsocks', ['-i', NODE_IP, '-p', String(port)]);
  await waitForPort(node, port);
  return p;
}

interface GroupState {
  name: string;
  now: string;
  members: { name: string; alive: boolean; delayMs?: number; error?: string }[];
}

/** Polls the admin API until `ok` holds for the group's state (or 10 s pass). */
async function waitForGroup(gw: Host, ok: (g: GroupState) => boolean): Promise<GroupState> {
  const deadline = Date.now() + 10_000;
  let last: GroupState | undefined;
  while (Date.now() < deadline) {
    const r = await gw.run('curl', ['-sS', '--max-time', '2', 'http://127.0.0.1:15000/groups'], { allowFailure: true });
    try {
      last = (JSON.parse(r.stdout) as GroupState[]).find((g) => g.name === 'auto');
    } catch {
      last = undefined;
    }
    if (last && ok(last)) return last;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`group state never matched; last: ${JSON.stringify(last)}`);
}

test('fallback group of two microsocks nodes: moves off a stopped node and back when it returns', async () => {
  await withGatewayLab({ net: 93, tmpPrefix: 'tpx-groups-' }, async (g) => {
    await startPeer(g.remote, 'echo_headers', 80);
    let first = await microsocks(g.node, 1080);
    await microsocks(g.node, 1081);
    const config = join(g.tmp, 'groups.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        `  hk1: socks5://${NODE_IP}:1080`,
        `  jp1: socks5://${NODE_IP}:1081`,
        'groups:',
        `  auto: { type: fallback, members: [hk1, jp1], url: "http://${REMOTE}/generate_204", interval: 1s }`,
        'default: auto',
        '',
      ].join('\n'),
    );
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, ['--admin']), '--config', config]);
    const up = await waitForGroup(
      g.gw,
      (s) => s.now === 'hk1' && s.members.every((m) => m.alive && m.delayMs !== undefined),
    );
    assert.ok(
      up.members.every((m) => m.delayMs! > 0 && m.delayMs! < 1000),
      JSON.stringify(up),
    );

    const curl = () => g.lan.run('curl', ['-sS', '--max-time', '6', `http://${REMOTE}/`], { allowFailure: true });
    assert.match((await curl()).stdout, new RegExp(NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')));
    await proxy.waitForOutput(/conn .*via=auto route=default .*close=eof/);

    await first.stop();
    const down = await waitForGroup(g.gw, (s) => s.now === 'jp1');
    assert.equal(down.members[0]?.alive, false);
    await proxy.waitForOutput(/group: group=auto now=jp1 from=hk1 reason="hk1 down: /);
    assert.match(
      (await curl()).stdout,
      new RegExp(NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')),
      'flows now leave through jp1',
    );

    const metrics = await g.gw.run('curl', ['-sS', 'http://127.0.0.1:15000/metrics']);
    assert.match(metrics.stdout, /tranproxy_group_member_selected\{group="auto",member="jp1"\} 1/);
    assert.match(metrics.stdout, /tranproxy_group_member_up\{group="auto",member="hk1"\} 0/);

    first = await microsocks(g.node, 1080);
    await waitForGroup(g.gw, (s) => s.now === 'hk1');
    await proxy.waitForOutput(/group: group=auto now=hk1 from=jp1 reason="back up"/);
  });
});
