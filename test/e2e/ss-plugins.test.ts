// Shadowsocks nodes behind SIP003 plugins, end to end in the gateway lab: real ss-server
// with v2ray-plugin (websocket, websocket+TLS) and obfs-server (http, tls) on the node; a
// LAN host reaches the remote through each. tranproxy runs each plugin the way ss-local
// does, as the data plane's user; a plugin that is killed comes back; none outlives
// tranproxy after SIGTERM or SIGKILL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, gatewayRunArgs, withGatewayLab, type GatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';
import { childPids, procStatus, workerPid } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const IP = gatewayLabAddresses(91);
const PW = 'plug:in pw';
const METHOD = 'aes-256-gcm';
const TLS_HOST = 'ws.remote.test';

/** name, ss-server's plugin and its options, the link's plugin=, the remote port routed through it */
function variants(certDir: string) {
  const cert = join(certDir, 'cert.pem');
  const key = join(certDir, 'key.pem');
  return [
    {
      name: 'v2-ws',
      port: 8001,
      server: ['ss-v2ray-plugin', 'server;path=/ws'],
      client: 'v2ray-plugin;mode=websocket;host=cdn.remote.test;path=/ws',
      remotePort: 81,
    },
    {
      name: 'v2-wss',
      port: 8002,
      server: ['ss-v2ray-plugin', `server;tls;host=${TLS_HOST};cert=${cert};key=${key}`],
      client: `v2ray-plugin;mode=websocket;tls;host=${TLS_HOST};cert=${cert}`,
      remotePort: 82,
    },
    {
      name: 'obfs-http',
      port: 8003,
      server: ['obfs-server', 'obfs=http'],
      client: 'obfs-local;obfs=http;obfs-host=www.bing.com',
      remotePort: 83,
    },
    {
      name: 'obfs-tls',
      port: 8004,
      server: ['obfs-server', 'obfs=tls'],
      client: 'obfs-local;obfs=tls;obfs-host=www.bing.com',
      remotePort: 84,
    },
  ];
}

async function curlClient(lan: Host, url: string): Promise<string | undefined> {
  const r = await lan.run('curl', ['-sS', '--max-time', '8', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as { client: { address: string } }).client.address : undefined;
}

/** Processes below the worker that are plugins (setpriv exec'd into them). */
function pluginPids(worker: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const pid of childPids(worker)) {
    try {
      out.set(pid, readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Gone, or a zombie nobody reaped yet (it no longer runs). */
function dead(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function setUp(g: GatewayLab) {
  chmodSync(g.tmp, 0o755); // the plugins run as nobody and read the CA certificate from here
  await g.node.run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${TLS_HOST}`,
    '-addext',
    `subjectAltName=DNS:${TLS_HOST}`,
    '-keyout',
    join(g.tmp, 'key.pem'),
    '-out',
    join(g.tmp, 'cert.pem'),
  ]);
  chmodSync(join(g.tmp, 'cert.pem'), 0o644);
  const vs = variants(g.tmp);
  for (const v of vs) {
    g.node.spawn('ss-server', [
      '-s',
      IP.node,
      '-p',
      String(v.port),
      '-k',
      PW,
      '-m',
      METHOD,
      '--plugin',
      v.server[0]!,
      '--plugin-opts',
      v.server[1]!,
    ]);
    await startPeer(g.remote, 'echo_headers', v.remotePort);
  }
  for (const v of vs) await waitForPort(g.node, v.port);
  const userinfo = Buffer.from(`${METHOD}:${PW}`).toString('base64url');
  const config = join(g.tmp, 'gateway.yaml');
  writeFileSync(
    config,
    [
      'nodes:',
      ...vs.map(
        (v) => `  ${v.name}: "ss://${userinfo}@${IP.node}:${v.port}/?plugin=${encodeURIComponent(v.client)}#${v.name}"`,
      ),
      'rules:',
      ...vs.flatMap((v) => [`  - port: ${v.remotePort}`, `    outbound: ${v.name}`]),
      'default: direct',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return { vs, config };
}

test('ss nodes behind v2ray-plugin (ws, ws+tls) and obfs (http, tls): LAN traffic goes through each; plugins run as nobody, restart when killed, go with SIGTERM', async () => {
  await withGatewayLab({ net: 91, tmpPrefix: 'tpx-plugins-' }, async (g) => {
    const { vs, config } = await setUp(g);
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, ['--workers', '1']), '--config', config]);
    for (const v of vs) {
      assert.equal(
        await curlClient(g.lan, `http://${IP.remote}:${v.remotePort}/`),
        IP.nodeSideOfRemote,
        `${v.name}: the remote sees the node\n${proxy.output().slice(-3000)}`,
      );
      await proxy.waitForOutput(
        new RegExp(`conn .*dst=${IP.remote.replace(/\./g, '\\.')}:${v.remotePort} .*via=${v.name} route=rules`),
      );
    }
    const worker = workerPid(proxy.pid);
    const plugins = pluginPids(worker);
    assert.deepEqual([...plugins.values()].sort(), ['obfs-local', 'obfs-local', 'ss-v2ray-plugin', 'ss-v2ray-plugin']);
    for (const pid of plugins.keys()) {
      assert.match(procStatus(pid).Uid!, /^65534\s/, 'the plugin runs as the data plane user (nobody)');
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(env.includes(`SS_REMOTE_HOST=${IP.node}`) && env.includes('SS_LOCAL_HOST=127.0.0.1'), env.join(' '));
      assert.ok(
        env.some((e) => /^SS_LOCAL_PORT=\d+$/.test(e)) && env.some((e) => /^SS_PLUGIN_OPTIONS=(mode|obfs)=/.test(e)),
        env.join(' '),
      );
    }

    // A plugin that dies is restarted (backoff starts at 250 ms) and the node works again.
    const [obfsPid] = [...plugins].find(([, comm]) => comm === 'obfs-local')!;
    process.kill(obfsPid, 'SIGKILL');
    await proxy.waitForOutput(new RegExp(`plugin exited: .*pid=${obfsPid}`));
    await until(
      'a new obfs-local',
      () =>
        [...pluginPids(worker)].filter(([, c]) => c === 'obfs-local').length === 2 && !pluginPids(worker).has(obfsPid),
    );
    for (const v of vs.filter((x) => x.name.startsWith('obfs'))) {
      assert.equal(
        await curlClient(g.lan, `http://${IP.remote}:${v.remotePort}/`),
        IP.nodeSideOfRemote,
        `${v.name} after the restart`,
      );
    }

    // SIGTERM to tranproxy alone (not its process group): no plugin is left behind.
    const all = [...pluginPids(worker).keys()];
    process.kill(proxy.pid, 'SIGTERM');
    await until(
      'tranproxy, its worker and every plugin gone after SIGTERM',
      () => dead(proxy.pid) && dead(worker) && all.every(dead),
      20_000,
    );
  });
});

test('SIGKILL of tranproxy (supervisor and worker, as the OOM killer would) takes its plugins along (PR_SET_PDEATHSIG)', async () => {
  await withGatewayLab({ net: 91, tmpPrefix: 'tpx-plugins-' }, async (g) => {
    const { vs, config } = await setUp(g);
    const proxy = await startTranproxy(g.gw, [...gatewayRunArgs(g, ['--workers', '1']), '--config', config]);
    const v = vs[0]!;
    assert.equal(await curlClient(g.lan, `http://${IP.remote}:${v.remotePort}/`), IP.nodeSideOfRemote);
    const worker = workerPid(proxy.pid);
    const plugins = [...pluginPids(worker).keys()];
    assert.equal(plugins.length, 1, 'plugins start on first use: only the one used so far');
    // Nothing in tranproxy runs after this: only the kernel's parent-death signal can stop the plugin.
    process.kill(proxy.pid, 'SIGKILL');
    process.kill(worker, 'SIGKILL');
    await until('the plugin gone after SIGKILL of tranproxy', () => plugins.every(dead));
  });
});
