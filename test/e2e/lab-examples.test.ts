// `tranproxy lab up|down|status` on every example in examples/, each inside a throwaway
// "outer" network namespace that plays the host (so the real host is never touched):
// the lab's own connectivity checks, a second `up` that changes nothing, `status`, `down`,
// and then the outer namespace's links, nft ruleset, routes and sysctls, and the namespace
// list, exactly as before. Also: a failure half way leaves nothing behind, and `down` works
// from the lab file alone when the state file is lost.
//
// The CLI runs under `nsenter --net=/run/netns/OUTER`, not `ip netns exec OUTER`: the latter
// gives the process a private mount namespace, so the namespaces `lab up` creates would be
// mounted only there and vanish with it (lab up refuses that case, see the last test).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'dist/cli/main.js');
const EXAMPLES = join(ROOT, 'examples');
const STATE_DIR = '/run/tranproxy/labs';

const rand = (n: number) =>
  randomInt(36 ** n)
    .toString(36)
    .padStart(n, '0');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, input: opts.input });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function ok(r: Result, what: string): Result {
  assert.equal(r.status, 0, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Run in a lab (or the outer) namespace. */
function inNs(ns: string, cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Result {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

function rootNetns(): string[] {
  return sh('ip', ['netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** A throwaway namespace standing for the host; its name fits test/helpers' "other process's lab" pattern. */
class Outer {
  readonly name = `tpxlo-${process.pid.toString(36)}-${rand(4)}-host`;
  private readonly peers: ChildProcess[] = [];
  private readonly labs: { file: string; name: string }[] = [];

  constructor() {
    ok(sh('ip', ['netns', 'add', this.name]), 'ip netns add');
    ok(sh('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']), 'lo up');
  }

  /** A command in the outer namespace (network namespace only, like the host). */
  run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Result {
    return sh('nsenter', [`--net=/run/netns/${this.name}`, cmd, ...args], opts);
  }

  lab(verb: 'up' | 'down' | 'status', file: string, name: string): Result {
    if (verb === 'up' && !this.labs.some((l) => l.name === name)) this.labs.push({ file, name });
    return this.run(process.execPath, [BIN, 'lab', verb, file, '--name', name], { timeoutMs: 120_000 });
  }

  /** Start a python peer in `ns`; resolves once it listens. Killed (by pid) in cleanup. */
  async peer(ns: string, script: string, port: number, bind: string): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', ns, 'python3', join(ROOT, 'test/peers', script), String(port), bind], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.peers.push(child);
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.resume();
    for (let i = 0; i < 200 && !/listening/.test(err); i++) {
      if (child.exitCode !== null) break;
      await sleep(25);
    }
    assert.match(err, /listening/, `${script} in ${ns} did not start: ${err}`);
    return child;
  }

  /** What `lab down` must restore exactly. */
  snapshot(labName: string): Record<string, string> {
    const mine = (n: string) => n === this.name || n.startsWith(`${labName}-`);
    return {
      'root ip netns list (this test)': rootNetns().filter(mine).join('\n'),
      'outer ip netns list (this test)': this.run('ip', ['netns', 'list'])
        .stdout.split('\n')
        .map((l) => l.split(' ')[0]!)
        .filter((n) => n && mine(n))
        .join('\n'),
      'outer ip -o link': this.run('ip', ['-o', 'link']).stdout,
      'outer ip -o addr': this.run('ip', ['-o', 'addr']).stdout,
      'outer nft list ruleset': this.run('nft', ['list', 'ruleset']).stdout,
      'outer ip route': this.run('ip', ['route', 'show', 'table', 'all']).stdout,
      'outer ip -6 route': this.run('ip', ['-6', 'route', 'show', 'table', 'all']).stdout,
      'outer sysctls': this.run('sysctl', ['-a', '-r', '^net\\.ipv[46]\\.(ip_forward|conf\\.(all|default|lo)\\.)'])
        .stdout,
      'state file': String(existsSync(join(STATE_DIR, `${labName}.json`))),
    };
  }

  async cleanup(): Promise<void> {
    for (const p of this.peers) {
      if (p.exitCode === null && p.pid) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const l of this.labs) this.lab('down', l.file, l.name);
    // Should `down` have failed: the labs' namespaces (their processes were started by this test).
    for (const ns of rootNetns()) {
      if (!this.labs.some((l) => ns.startsWith(`${l.name}-`))) continue;
      for (const pid of sh('ip', ['netns', 'pids', ns]).stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      sh('ip', ['netns', 'del', ns]);
    }
    for (const l of this.labs) rmSync(join(STATE_DIR, `${l.name}.json`), { force: true });
    for (const l of this.labs) rmSync(join(STATE_DIR, l.name), { recursive: true, force: true });
    sh('ip', ['netns', 'del', this.name]);
  }
}

async function withOuter(fn: (o: Outer) => Promise<void>): Promise<void> {
  const o = new Outer();
  try {
    await fn(o);
  } finally {
    await o.cleanup();
  }
  assert.ok(!rootNetns().includes(o.name), 'outer netns removed');
}

function assertSame(before: Record<string, string>, after: Record<string, string>): void {
  for (const k of Object.keys(before)) assert.equal(after[k], before[k], `${k} differs after lab down`);
}

/**
 * The common life cycle: up, the example's checks, up again (no change), status (all there),
 * down, status (none there), and every dump exactly as before.
 */
async function lifeCycle(
  example: string,
  prefix: string,
  checks: (o: Outer, name: string) => Promise<void>,
): Promise<void> {
  const file = join(EXAMPLES, example);
  const name = `${prefix}${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    const up = ok(o.lab('up', file, name), 'lab up');
    assert.match(up.stdout, new RegExp(`lab ${name}: up \\(\\d+ created, 0 already present\\)`));
    for (const h of loadHosts(file)) assert.ok(rootNetns().includes(`${name}-${h}`), `netns ${name}-${h}`);

    await checks(o, name);

    const again = ok(o.lab('up', file, name), 'second lab up');
    assert.match(
      again.stdout,
      new RegExp(`^lab ${name}: already up, nothing changed \\(\\d+ declared pieces present\\)\\n$`),
    );
    const status = ok(o.lab('status', file, name), 'lab status');
    assert.doesNotMatch(status.stdout, /MISSING/);
    assert.match(status.stdout, new RegExp(`lab ${name}: all \\d+ declared pieces present`));

    const down = ok(o.lab('down', file, name), 'lab down');
    assert.match(down.stdout, new RegExp(`lab ${name}: down \\(\\d+ removed\\)`));
    assert.equal(down.stderr, '');
    const after = o.snapshot(name);
    assertSame(before, after);
    const st = o.lab('status', file, name);
    assert.equal(st.status, 1);
    assert.match(st.stdout, /down \(none of \d+ declared pieces present\)/);
    assert.match(ok(o.lab('down', file, name), 'second down').stdout, /nothing to remove/);
  });
}

function loadHosts(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const m = text.match(/^hosts:\n((?: {2}.*\n|\s*\n|\s*#.*\n)*)/m);
  return [...(m?.[1] ?? '').matchAll(/^ {2}([a-z][a-z0-9_]*):/gm)].map((x) => x[1]!);
}

function pingOk(ns: string, addr: string): void {
  ok(inNs(ns, 'ping', ['-c1', '-W3', addr]), `${ns}: ping ${addr}`);
}

function curlJson(ns: string, url: string): { client: { address: string } } {
  const r = ok(inNs(ns, 'curl', ['-sS', '--max-time', '5', url]), `${ns}: curl ${url}`);
  return JSON.parse(r.stdout) as { client: { address: string } };
}

function httpCode(r: Result): string {
  return r.stdout.trim();
}

test('docker-bridge: bridge, MASQUERADE out of the uplink, DNAT port mapping to a container', async () => {
  await lifeCycle('docker-bridge.yaml', 'd', async (o, n) => {
    pingOk(`${n}-c1`, '172.18.0.3'); // across the bridge
    pingOk(`${n}-c2`, '172.18.0.1'); // the bridge is the gateway
    // Egress: the far side sees the uplink address, not the container's.
    await o.peer(`${n}-outside`, 'echo_headers.py', 8000, '0.0.0.0');
    for (const c of ['c1', 'c2'])
      assert.equal(curlJson(`${n}-${c}`, 'http://203.0.113.2:8000/egress').client.address, '203.0.113.1');
    // DNAT: outside -> uplink:8080 -> c1:80, the client address kept.
    const r = inNs(`${n}-outside`, 'curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '5',
      'http://203.0.113.1:8080/',
    ]);
    assert.equal(httpCode(r), '200', r.stderr);
    const log = readFileSync(join(STATE_DIR, n, 'c1.0.log'), 'utf8');
    assert.match(log, /^203\.0\.113\.2 - - .*"GET \/ HTTP\/1\.1" 200/m);
    // The rules are in the lab's own table; forwarding is on while the lab is up.
    const nft = ok(o.run('nft', ['list', 'table', 'inet', `tpxlab_${n}`]), 'nft list table').stdout;
    assert.match(nft, new RegExp(`iifname "${n}-uplink" tcp dport 8080 dnat ip to 172\\.18\\.0\\.2:80`));
    assert.match(nft, new RegExp(`ip saddr 172\\.18\\.0\\.0/16 oifname "${n}-uplink" masquerade`));
    assert.equal(o.run('sysctl', ['-n', 'net.ipv4.ip_forward']).stdout.trim(), '1');
    const file = join(EXAMPLES, 'docker-bridge.yaml');
    const status = ok(o.lab('status', file, n), 'status').stdout;
    const pid = Number(
      status.match(/^ok {6}c1: process python3 -m http\.server 80 --bind 0\.0\.0\.0 \(pid (\d+)\)$/m)?.[1],
    );
    assert.ok(pid > 0, status);
    // Pieces that went missing: `up` makes exactly those again, `status` names them first.
    process.kill(-pid, 'SIGTERM'); // the server lab up started (it leads its own group)
    ok(inNs(`${n}-c2`, 'ip', ['route', 'del', 'default']), 'route del');
    for (
      let i = 0;
      i < 100 &&
      existsSync(`/proc/${pid}`) &&
      !/^[ZX]$/.test(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]!);
      i++
    )
      await sleep(20);
    const partial = o.lab('status', file, n);
    assert.equal(partial.status, 1);
    assert.match(partial.stdout, /^MISSING c2: route default via 172\.18\.0\.1$/m);
    assert.match(partial.stdout, /^MISSING c1: process python3 -m http\.server/m);
    assert.match(partial.stdout, /: 2 of \d+ declared pieces missing/);
    const re = ok(o.lab('up', file, n), 'up again').stdout;
    assert.match(re, /up \(2 created, \d+ already present\)/);
    pingOk(`${n}-c2`, '203.0.113.2');
  });
});

test('publish: a container with a server; tranproxy publish serves it on the host and to a remote', async () => {
  await lifeCycle('publish.yaml', 'p', async (o, n) => {
    const direct = o.run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '5',
      'http://10.88.0.2/',
    ]);
    assert.equal(httpCode(direct), '200', direct.stderr);
    pingOk(`${n}-remote`, '192.0.2.1');
    // The command the example's header documents.
    const pub = spawn(
      'nsenter',
      [`--net=/run/netns/${o.name}`, process.execPath, BIN, 'publish', '8080:10.88.0.2:80'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    pub.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    pub.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => pub.once('exit', (code) => r(code)));
    try {
      for (let i = 0; i < 400 && !/ready: publishing/.test(out) && pub.exitCode === null; i++) await sleep(25);
      assert.match(out, /tranproxy: ready: publishing tcp \*:8080->10\.88\.0\.2:80/, out);
      const local = o.run('curl', [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--max-time',
        '5',
        'http://127.0.0.1:8080/',
      ]);
      assert.equal(httpCode(local), '200', local.stderr);
      const remote = inNs(`${n}-remote`, 'curl', [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--max-time',
        '5',
        'http://192.0.2.1:8080/',
      ]);
      assert.equal(httpCode(remote), '200', remote.stderr);
      assert.match(readFileSync(join(STATE_DIR, n, 'web.0.log'), 'utf8'), /^192\.0\.2\.2 - - /m);
    } finally {
      if (pub.exitCode === null && pub.pid) process.kill(pub.pid, 'SIGTERM');
      assert.equal(await exited, 0, out);
    }
  });
});

test('macvlan-gateway: LAN hosts reach the gateway and route through it; the host reaches it via its sub-interface', async () => {
  await lifeCycle('macvlan-gateway.yaml', 'm', async (o, n) => {
    for (const a of ['192.168.77.2', 'fd77::2', '192.168.77.12']) pingOk(`${n}-lan1`, a); // macvlan bridge mode
    // The host (the parent's own stack) reaches a macvlan child only through mvhost and its /32.
    for (const a of ['192.168.77.2', 'fd77::2']) {
      assert.match(ok(o.run('ip', ['route', 'get', a]), 'route get').stdout, new RegExp(`dev ${n}-mvhost`));
      ok(o.run('ping', ['-c1', '-W3', a]), `host: ping ${a}`);
    }
    // Off-LAN traffic goes through the gateway (masqueraded there), both families.
    await o.peer(`${n}-router`, 'echo_headers.py', 8000, '::');
    assert.equal(curlJson(`${n}-lan1`, 'http://198.51.100.10:8000/').client.address, '192.168.77.2');
    assert.equal(curlJson(`${n}-lan2`, 'http://[2001:db8:100::10]:8000/').client.address, 'fd77::2');
    // On the LAN itself, no gateway: the router sees the host's own address.
    assert.equal(curlJson(`${n}-lan1`, 'http://192.168.77.1:8000/').client.address, '192.168.77.11');
    // The file's suggested tranproxy command is accepted as written (its rules, dry run, in gw).
    const suggested = /^#\s+nsenter --net=\/run\/netns\/mvgw-gw tranproxy (run .*)$/m.exec(
      readFileSync(join(EXAMPLES, 'macvlan-gateway.yaml'), 'utf8'),
    );
    assert.ok(suggested, 'the example suggests a tranproxy run command');
    const flags = suggested[1]!.split(/\s+/).slice(1);
    const plan = ok(
      inNs(`${n}-gw`, process.execPath, [BIN, 'rules', 'plan', ...flags]),
      `rules plan ${flags.join(' ')}`,
    );
    assert.match(plan.stdout, /tproxy ip to :15001/);
  });
});

test('calico-proxyarp: /32 pods behind the 169.254.1.1 proxy-ARP gateway reach each other and the outside', async () => {
  await lifeCycle('calico-proxyarp.yaml', 'c', async (o, n) => {
    pingOk(`${n}-pod1`, '10.244.1.11');
    pingOk(`${n}-pod2`, '10.244.1.10');
    // The gateway address resolved to the MAC of the node's veth end.
    const mac = ok(inNs(`${n}-node`, 'cat', ['/sys/class/net/cali1/address']), 'cali1 mac').stdout.trim();
    assert.match(
      ok(inNs(`${n}-pod1`, 'ip', ['neigh', 'show', '169.254.1.1']), 'neigh').stdout,
      new RegExp(`lladdr ${mac}`),
    );
    // The pod has no subnet: only its /32.
    assert.match(
      inNs(`${n}-pod1`, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'eth0']).stdout,
      /inet 10\.244\.1\.10\/32 /,
    );
    // Calico's node-side sysctls, set inside the node namespace (not the one lab up ran in).
    for (const [key, value] of [
      ['net.ipv4.conf.cali1.rp_filter', '1'],
      ['net.ipv4.conf.cali2.route_localnet', '1'],
      ['net.ipv6.conf.cali1.proxy_ndp', '1'],
      ['net.ipv6.conf.cali2.proxy_ndp', '1'],
    ]) {
      assert.equal(ok(inNs(`${n}-node`, 'sysctl', ['-n', key!]), key!).stdout.trim(), value, key);
    }
    // IPv6: the cali* ends carry Calico's MAC, so the pods' fe80::ecee:eeff:feee:eeee gateway is theirs.
    assert.equal(mac, 'ee:ee:ee:ee:ee:ee', 'mac: applied');
    pingOk(`${n}-pod1`, 'fd00:244:1::11');
    pingOk(`${n}-pod2`, 'fd00:244:1::10');
    await o.peer(`${n}-outside`, 'echo_headers.py', 8000, '::');
    assert.equal(curlJson(`${n}-pod1`, 'http://192.0.2.2:8000/').client.address, '192.0.2.1');
    assert.equal(curlJson(`${n}-pod2`, 'http://[2001:db8:2::2]:8000/').client.address, '2001:db8:2::1');
    // Nothing of this lab is in the namespace it ran in.
    assert.equal(o.run('ip', ['-o', 'link']).stdout.trim().split('\n').length, 1);
  });
});

// ---------------------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'tpx-lab-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function labFile(body: string): string {
  const f = join(tmp, `lab-${rand(6)}.yaml`);
  writeFileSync(f, body);
  return f;
}

/** This run's own sleep duration: a parallel run's sleepers never match it. */
const SLEEP_ARG = String(3_000_000 + (process.pid % 1_000_000));

/** A lab touching every kind of resource, root included; `tail` adds the failing piece. */
const FULL = (tail: { routes?: string; processes?: string }) => `
name: x
root:
  sysctls: {net.ipv4.ip_forward: 1, net.ipv4.conf.all.rp_filter: 2}
  routes: [10.55.0.0/16 via 10.50.0.2]
  nat:
    - {type: masquerade, source: 10.50.0.0/24, out: br0}
hosts:
  a:
    sysctls: {net.ipv4.ip_forward: 1}
    routes: [default via 10.50.0.1]
    processes:
      - {command: sleep, args: ["${SLEEP_ARG}"]}
  b:
    routes:
      - default via 10.50.0.1
      ${tail.routes ?? ''}
    ${tail.processes ? `processes:\n      - ${tail.processes}` : ''}
bridges:
  br0: {addresses: [10.50.0.1/24]}
links:
  - {a: {host: a, addresses: [10.50.0.2/24]}, b: {bridge: br0}}
  - {a: {host: b, addresses: [10.50.0.3/24]}, b: {bridge: br0}}
`;

function sleepers(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8') === `sleep\u0000${SLEEP_ARG}\u0000`;
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function failingUp(tail: { routes?: string; processes?: string }, expect: RegExp): Promise<void> {
  const file = labFile(FULL(tail));
  const name = `f${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    const r = o.lab('up', file, name);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, expect);
    assert.match(r.stderr, /rolled back \d+ changes of this run/);
    // It had got far: namespaces, links, the root table and sysctls were made, then undone.
    assert.match(r.stdout, new RegExp(`\\+ root: nft table inet tpxlab_${name}`));
    assert.match(r.stdout, /\+ root: sysctl net\.ipv4\.ip_forward=1/);
    assertSame(before, o.snapshot(name));
    for (let i = 0; i < 40 && sleepers().length; i++) await sleep(50);
    assert.deepEqual(sleepers(), [], 'the process started before the failure is gone');
  });
}

test('a failure half way (route via an unreachable gateway) rolls back everything this up made', async () => {
  // Routes come after namespaces, links, addresses and sysctls; the root NAT table and the
  // processes come later still: make a late route fail so the rest exists... except those.
  const file = labFile(FULL({ routes: '- 10.60.0.0/16 via 10.99.0.1' }));
  const name = `f${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    const r = o.lab('up', file, name);
    assert.equal(r.status, 1, r.stdout);
    assert.match(
      r.stderr,
      /b: route 10\.60\.0\.0\/16 via 10\.99\.0\.1: ip -n \S+ -4 route add .*Nexthop has invalid gateway/,
    );
    assert.match(r.stderr, /rolled back \d+ changes of this run:\n {2}- /);
    assert.match(r.stdout, /\+ root: sysctl net\.ipv4\.ip_forward=1/);
    assert.match(r.stdout, /\+ root: route 10\.55\.0\.0\/16 via 10\.50\.0\.2/);
    assertSame(before, o.snapshot(name));
  });
});

test('a failure at the last step (a process that exits at once) undoes processes, NAT, sysctls and all', async () => {
  await failingUp(
    { processes: '{command: sh, args: [-c, "echo broken >&2; exit 3"]}' },
    /b: process sh -c echo broken >&2; exit 3: exited at once\n--- .*b\.0\.log ---\nbroken/,
  );
});

test('down from the lab file alone (state file lost) removes namespaces, processes, root interfaces and table', async () => {
  const file = labFile(`
name: x
root:
  nat: [{type: masquerade, out: up}]
hosts:
  a:
    processes: [{command: sleep, args: ["${SLEEP_ARG}"]}]
  far:
bridges:
  br0: {addresses: [10.70.0.1/24]}
links:
  - {a: {host: a, addresses: [10.70.0.2/24]}, b: {bridge: br0}}
  - {a: {host: root, ifname: up, addresses: [10.71.0.1/24]}, b: {host: far, addresses: [10.71.0.2/24]}}
`);
  const name = `s${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    ok(o.lab('up', file, name), 'up');
    assert.equal(sleepers().length, 1);
    rmSync(join(STATE_DIR, `${name}.json`));
    // Without the state file the process is still found (same argv in the lab's netns).
    assert.match(ok(o.lab('status', file, name), 'status').stdout, /all \d+ declared pieces present/);
    const down = ok(o.lab('down', file, name), 'down');
    assert.match(down.stdout, new RegExp(`- root: bridge ${name}-br0`));
    assert.match(down.stdout, new RegExp(`- root: nft table inet tpxlab_${name}`));
    assert.match(down.stdout, new RegExp(`- netns ${name}-a`));
    for (let i = 0; i < 40 && sleepers().length; i++) await sleep(50);
    assert.deepEqual(sleepers(), []);
    assertSame(before, o.snapshot(name));
  });
});

test('lab up refuses a private mount namespace (ip netns exec), where its namespaces would vanish', async () => {
  const file = labFile('name: x\nhosts: {a: }\n');
  const name = `r${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    const r = sh('ip', ['netns', 'exec', o.name, process.execPath, BIN, 'lab', 'up', file, '--name', name]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /only visible in this process's own mount namespace .* nsenter --net=/);
    assertSame(before, o.snapshot(name));
  });
});

test('lab forward policy drop + accept rules with negation, link mtu/mac/promisc applied; status and doctor name a foreign FORWARD drop', async () => {
  const file = labFile(`
name: x
root:
  sysctls: {net.ipv4.ip_forward: 1}
  forward:
    policy: drop
    accept:
      - {in: "!up", out: up}
hosts:
  a:
    routes: [default via 10.80.0.1]
  far:
    routes: [10.80.0.0/24 via 10.81.0.1]
links:
  - a: {host: a, addresses: [10.80.0.2/24], mtu: 1400, mac: "02:00:00:00:80:02", promisc: true}
    b: {host: root, addresses: [10.80.0.1/24], mtu: 1400}
  - {a: {host: root, ifname: up, addresses: [10.81.0.1/24]}, b: {host: far, addresses: [10.81.0.2/24]}}
`);
  const name = `w${rand(5)}`;
  await withOuter(async (o) => {
    const before = o.snapshot(name);
    ok(o.lab('up', file, name), 'up');
    const link = JSON.parse(ok(inNs(`${name}-a`, 'ip', ['-j', 'link', 'show', 'dev', 'eth0']), 'link').stdout)[0];
    assert.equal(link.mtu, 1400);
    assert.equal(link.address, '02:00:00:00:80:02');
    assert.ok(link.flags.includes('PROMISC'), link.flags.join(','));
    // The declared forward chain: out through `up` from anything but `up` passes; a new flow in via `up` does not.
    pingOk(`${name}-a`, '10.81.0.2');
    assert.notEqual(
      inNs(`${name}-far`, 'ping', ['-c1', '-W1', '10.80.0.2']).status,
      0,
      'far -> a is dropped by the declared policy',
    );
    const clean = ok(o.lab('status', file, name), 'status');
    assert.match(clean.stdout, /forward policy drop \+ 1 accept rule/);
    assert.doesNotMatch(clean.stdout, /DROPPED/, "the lab's own declared drop is not a problem");

    // A FORWARD drop outside the lab (Docker's default) breaks the lab's routing: status and doctor say so.
    ok(o.run('iptables', ['-P', 'FORWARD', 'DROP']), 'iptables -P FORWARD DROP');
    assert.notEqual(inNs(`${name}-a`, 'ping', ['-c1', '-W1', '10.81.0.2']).status, 0, 'now dropped');
    const st = o.lab('status', file, name);
    assert.equal(st.status, 1, st.stdout);
    assert.match(
      st.stdout,
      /^DROPPED root: iptables FORWARD policy DROP drops the IPv4 traffic this lab routes here \(net\.ipv4\.ip_forward=1\)/m,
    );
    assert.match(st.stdout, /all \d+ declared pieces present, but 1 forward drop outside the lab breaks its routing/);
    const doc = JSON.parse(o.run(process.execPath, [BIN, 'doctor', '--json']).stdout) as {
      check: string;
      status: string;
      detail: string;
    }[];
    const fd = doc.find((c) => c.check === 'forward-drop')!;
    assert.equal(fd.status, 'WARN', fd.detail);
    assert.match(fd.detail, /iptables FORWARD policy DROP/);
    assert.match(fd.detail, new RegExp(`nft chain inet tpxlab_${name} forward \\(policy drop\\)`));
    ok(o.run('nft', ['delete', 'table', 'ip', 'filter']), "the test's own DROP goes with the table iptables-nft made");

    ok(o.lab('down', file, name), 'down');
    assertSame(before, o.snapshot(name));
  });
});
