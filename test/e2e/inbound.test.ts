// --capture inbound (Istio's inbound): a client in another namespace connects to the pod's
// own port; the proxy takes the connection, injects -H headers and delivers it to the local
// app. Under TPROXY the app sees the client's real address; under REDIRECT the pod's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Host, Lab } from '../../src/netlab/lab.js';
import { startPeer, startTranproxy, withLab } from '../helpers/lab.js';

const POD = '10.76.1.1';
const CLIENT = '10.76.1.2';

interface Echo {
  headers: [string, string][];
  client: { address: string };
}

async function pod(lab: Lab): Promise<{ pod: Host; client: Host }> {
  const p = lab.addHost('pod');
  const client = lab.addHost('client');
  lab.link(p, client, { a: [`${POD}/24`, 'fd76:1::1/64'], b: [`${CLIENT}/24`, 'fd76:1::2/64'] });
  await startPeer(p, 'echo_headers', 8080);
  await startPeer(p, 'echo_headers', 8081);
  return { pod: p, client };
}

async function get(client: Host, url: string): Promise<Echo> {
  const r = await client.run('curl', ['-sS', '--max-time', '5', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `${url}: ${r.stdout}${r.stderr}`);
  return JSON.parse(line) as Echo;
}

const injected = (e: Echo): string[] => e.headers.filter(([n]) => n.toLowerCase() === 'x-inbound').map(([, v]) => v);

const CASES = [
  ['tproxy', 'nft'],
  ['tproxy', 'iptables'],
  ['redirect', 'nft'],
] as const;
for (const [mode, firewall] of CASES) {
  test(`inbound ${mode} (${firewall}): a client's connection to the pod's port gets the header; the app sees ${mode === 'tproxy' ? "the client's" : "the pod's"} address`, async () => {
    await withLab(async (lab) => {
      const { pod: p, client } = await pod(lab);
      const args = [
        'run',
        '--mode',
        mode,
        '--firewall',
        firewall,
        '--capture',
        'inbound',
        '--inbound-port',
        '8080',
        '-H',
        'X-Inbound: yes',
        '--admin',
        '127.0.0.1:15000',
      ];
      const proxy = await startTranproxy(p, args);
      const seen = mode === 'tproxy' ? CLIENT : POD;
      const v4 = await get(client, `http://${POD}:8080/in`);
      assert.deepEqual(injected(v4), ['yes']);
      assert.equal(v4.client.address.replace(/^::ffff:/, ''), seen);
      const v6 = await get(client, 'http://[fd76:1::1]:8080/in6');
      assert.deepEqual(injected(v6), ['yes']);
      assert.equal(v6.client.address, mode === 'tproxy' ? 'fd76:1::2' : 'fd76:1::1');
      await proxy.waitForOutput(/conn .*dst=10\.76\.1\.1:8080 .*requests=1/);
      // Not an inbound port: straight to the app, untouched.
      const other = await get(client, `http://${POD}:8081/other`);
      assert.deepEqual(injected(other), []);
      assert.equal(other.client.address.replace(/^::ffff:/, ''), CLIENT);
      // The pod's own connection to its app (loopback) is not captured either.
      const local = await get(p, 'http://127.0.0.1:8080/local');
      assert.deepEqual(injected(local), []);
    });
  });
}

test('inbound redirect without headers: the kernel-only relay delivers to the local app without looping', async () => {
  await withLab(async (lab) => {
    const { pod: p, client } = await pod(lab);
    await startTranproxy(p, ['run', '--capture', 'inbound', '--inbound-port', '8080']);
    const e = await get(client, `http://${POD}:8080/plain`);
    assert.equal(e.client.address.replace(/^::ffff:/, ''), POD, 'relayed by the proxy (the app sees the pod address)');
    assert.deepEqual(injected(e), []);
  });
});
