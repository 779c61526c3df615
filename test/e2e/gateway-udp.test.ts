// UDP through an upstream node, end to end, in the gateway lab's topology:
//   lan ─ gw (tranproxy run --mode tproxy --capture prerouting --udp --upstream URI) ─ node ─ remote
//          └─ direct
// The remote is reachable only through the node. Real nodes from Debian: dante (SOCKS5 UDP
// ASSOCIATE) and ss-server -u (Shadowsocks AEAD UDP relay, two ciphers). The remote's
// udp_echo prints each datagram's source: it must be the NODE's address; the LAN client must
// get the echo FROM the remote's address (transparent reply socket on the gateway).
// A config-file rule test sends one UDP port direct, the rest through the node, one port to
// an HTTP CONNECT node (refused: it cannot carry UDP) and one to reject.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import {
  gatewayLabAddresses,
  gatewayRunArgs,
  udpExchange,
  withGatewayLab,
  type GatewayLab,
} from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';

const {
  node: NODE_IP,
  nodeSideOfRemote: NODE_SIDE_OF_REMOTE,
  remote: REMOTE,
  direct: DIRECT_SRV,
  gwDirect: GW_SIDE_OF_DIRECT,
} = gatewayLabAddresses(75);

const have = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin} || test -x /usr/sbin/${bin}`]).status === 0;
const MISSING = ['danted', 'ss-server', 'python3', 'nft'].filter((b) => !have(b));
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : MISSING.length
      ? `missing ${MISSING.join(', ')} (apt-get install dante-server shadowsocks-libev python3 nftables)`
      : false;

/** The gateway lab, no servers started (each test starts its node and peers). */
async function withUdpLab(fn: (g: GatewayLab) => Promise<void>): Promise<void> {
  await withGatewayLab({ net: 75, tmpPrefix: 'tpx-gwudp-' }, fn);
}

/** The gateway's `tranproxy run` with UDP capture on. */
function gatewayArgs(g: GatewayLab, extra: string[]): string[] {
  return gatewayRunArgs(g, ['--udp', ...extra]);
}

async function dante(g: GatewayLab, port = 1080): Promise<LabProcess> {
  const conf = join(g.tmp, 'danted.conf');
  writeFileSync(
    conf,
    [
      'logoutput: stderr',
      `internal: ${NODE_IP} port = ${port}`,
      `external: ${NODE_SIDE_OF_REMOTE}`,
      'socksmethod: none',
      'clientmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      'client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }',
      'socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect udpassociate udpreply }',
      '',
    ].join('\n'),
  );
  // No -D: danted stays in the foreground (the lab stops it by its pid group); its own pid file.
  const p = g.node.spawn('danted', ['-f', conf, '-p', join(g.tmp, 'danted.pid'), '-N', '1'], {
    env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  await waitForPort(g.node, port);
  return p;
}

async function ssServer(g: GatewayLab, port: number, method: string, password: string): Promise<LabProcess> {
  const p = g.node.spawn('ss-server', ['-s', NODE_IP, '-p', String(port), '-k', password, '-m', method, '-u']);
  await waitForPort(g.node, port);
  await waitForPort(g.node, port, { udp: true });
  return p;
}

/** Established TCP connections to `port` inside `h`. */
async function establishedTo(h: Host, port: number): Promise<number> {
  const r = await h.run('ss', ['-Htn', 'state', 'established', `sport = :${port}`], { allowFailure: true });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('UDP through a SOCKS5 node (dante, UDP ASSOCIATE): the remote sees the node, replies come from the remote', {
  skip,
}, async () => {
  await withUdpLab(async (g) => {
    const echo = await startPeer(g.remote, 'udp_echo', 5353);
    const socks = await dante(g);
    const proxy = await startTranproxy(
      g.gw,
      gatewayArgs(g, ['-P', '5353', '--udp-idle-timeout', '2s', '--upstream', `socks5://${NODE_IP}:1080`]),
    );
    assert.match(proxy.output(), /protocols=tcp,udp/);

    const replies = await udpExchange(g.lan, REMOTE, 5353, ['via-dante-1', 'via-dante-2']);
    assert.deepEqual(replies, [`via-dante-1 ${REMOTE} 5353`, `via-dante-2 ${REMOTE} 5353`], proxy.output());
    await echo.waitForOutput(new RegExp(`^${NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')} \\d+$`, 'm'));
    assert.doesNotMatch(
      echo.output(),
      /^10\.75\.(1|2)\.\d+ /m,
      'neither the client nor the gateway reached the remote',
    );
    await proxy.waitForOutput(/udp route src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 via=upstream route=default/);
    // One flow (one association) for both datagrams; it ends idle and its control connection goes.
    await proxy.waitForOutput(
      /udp src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 up=22 down=22 packets=2\/2 .*close=idle out=routed/,
      10_000,
    );
    for (let i = 0; i < 50 && (await establishedTo(g.node, 1080)) > 0; i++) await sleep(100);
    assert.equal(await establishedTo(g.node, 1080), 0, 'the UDP association (its TCP control connection) is closed');

    // The association dies with its control connection: dante going away ends the flow.
    const first = await udpExchange(g.lan, REMOTE, 5353, ['before-node-stop']);
    assert.deepEqual(first, [`before-node-stop ${REMOTE} 5353`]);
    await socks.stop();
    await proxy.waitForOutput(
      /udp src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 .*close=association-closed out=routed/,
      8000,
    );
    // With the node down, new flows fail fast and are logged; the gateway lives on.
    assert.deepEqual(await udpExchange(g.lan, REMOTE, 5353, ['node-down'], 1), ['timeout']);
    await proxy.waitForOutput(/udp src=\S+ dst=10\.75\.3\.2:5353 .*close=error out=routed error=ECONNREFUSED/, 5000);
    await proxy.stop();
    const nft = await g.gw.run('nft', ['list', 'ruleset']);
    assert.doesNotMatch(nft.stdout, /tranproxy/);
  });
});

test('UDP through Shadowsocks nodes (ss-server -u): aes-256-gcm and chacha20-ietf-poly1305', { skip }, async () => {
  await withUdpLab(async (g) => {
    const echo = await startPeer(g.remote, 'udp_echo', 5353);
    for (const [i, method] of ['aes-256-gcm', 'chacha20-ietf-poly1305'].entries()) {
      const port = 8388 + i;
      const ss = await ssServer(g, port, method, 'pa:ss');
      const userinfo = Buffer.from(`${method}:pa:ss`).toString('base64url');
      const proxy = await startTranproxy(
        g.gw,
        gatewayArgs(g, ['-P', '5353', '--upstream', `ss://${userinfo}@${NODE_IP}:${port}#ss${i}`]),
      );
      const before = echo.output().split('\n').length;
      const msgs = [`${method}-a`, `${method}-b`, 'x'.repeat(1200)];
      const replies = await udpExchange(g.lan, REMOTE, 5353, msgs);
      assert.deepEqual(
        replies,
        msgs.map((m) => `${m} ${REMOTE} 5353`),
        `${method}\n${proxy.output()}`,
      );
      const seen = echo
        .output()
        .split('\n')
        .slice(before - 1)
        .filter((l) => /^\d/.test(l));
      assert.ok(seen.length >= 3, echo.output());
      assert.ok(
        seen.every((l) => l.startsWith(`${NODE_SIDE_OF_REMOTE} `)),
        `the remote sees the node only: ${seen.join('; ')}`,
      );
      await proxy.waitForOutput(/udp route src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 via=upstream route=default/);
      await proxy.stop();
      await proxy.waitForOutput(
        /udp src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 .*packets=3\/3 .*close=shutdown out=routed/,
      );
      await ss.stop();
    }
  });
});

test('UDP rules from a config file: one port direct, the rest via the node; an HTTP node and reject refuse with a reason', {
  skip,
}, async () => {
  await withUdpLab(async (g) => {
    const remoteEcho = await startPeer(g.remote, 'udp_echo', 5353);
    const directEcho = await startPeer(g.direct, 'udp_echo', 5354);
    await startPeer(g.remote, 'udp_echo', 5355);
    await ssServer(g, 8388, 'aes-256-gcm', 'secret');
    const config = join(g.tmp, 'gateway.yaml');
    writeFileSync(
      config,
      [
        'nodes:',
        `  node-a: ss://aes-256-gcm:secret@${NODE_IP}:8388`,
        `  web: http://${NODE_IP}:3128`,
        'rules:',
        '  - port: 5354',
        '    network: udp',
        '    outbound: direct',
        '  - port: 5355',
        '    network: udp',
        '    outbound: web',
        '  - port: 5356',
        '    outbound: reject',
        'default: node-a',
        '',
      ].join('\n'),
    );
    const proxy = await startTranproxy(g.gw, gatewayArgs(g, ['-P', '5353-5356', '--config', config]));

    // Direct: the direct server sees the gateway (UDP source is not spoofed), the client the server.
    assert.deepEqual(
      await udpExchange(g.lan, DIRECT_SRV, 5354, ['direct-port']),
      [`direct-port ${DIRECT_SRV} 5354`],
      proxy.output(),
    );
    await directEcho.waitForOutput(new RegExp(`^${GW_SIDE_OF_DIRECT.replace(/\./g, '\\.')} \\d+$`, 'm'));
    await proxy.waitForOutput(/udp route src=10\.75\.1\.2:\d+ dst=10\.75\.4\.2:5354 via=direct route=rules\[0\]/);

    // Every other port: through the node.
    assert.deepEqual(
      await udpExchange(g.lan, REMOTE, 5353, ['node-port']),
      [`node-port ${REMOTE} 5353`],
      proxy.output(),
    );
    await remoteEcho.waitForOutput(new RegExp(`^${NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')} \\d+$`, 'm'));
    await proxy.waitForOutput(/udp route src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5353 via=node-a route=default/);

    // An HTTP CONNECT node cannot carry UDP: refused, with the reason, no datagram leaves.
    assert.deepEqual(await udpExchange(g.lan, REMOTE, 5355, ['to-http-node'], 1), ['timeout']);
    await proxy.waitForOutput(
      /udp route src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5355 via=web route=rules\[1\] refused=udp-unsupported reason="node 'web' is an HTTP CONNECT proxy, which carries TCP only/,
    );
    await proxy.waitForOutput(
      /udp src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5355 .*close=error out=routed error=udp-unsupported/,
    );

    assert.deepEqual(await udpExchange(g.lan, REMOTE, 5356, ['rejected'], 1), ['timeout']);
    await proxy.waitForOutput(
      /udp route src=10\.75\.1\.2:\d+ dst=10\.75\.3\.2:5356 via=reject route=rules\[2\] refused=rejected-by-rule/,
    );
    await proxy.waitForOutput(/udp src=\S+ dst=10\.75\.3\.2:5356 .*close=error out=routed error=rejected-by-rule/);

    // Still working after the refusals.
    assert.deepEqual(await udpExchange(g.lan, REMOTE, 5353, ['still-fine']), [`still-fine ${REMOTE} 5353`]);
    await proxy.stop();
  });
});
