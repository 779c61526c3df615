// The gateway lab: LAN hosts route through a gateway namespace that runs tranproxy, and a
// "remote" namespace is reachable only through an upstream node.
//
//   lan ─ gw ─ node ─ remote
//          └─ direct
//
// Shared by the e2e tests that put tranproxy on a gateway (gateway.test.ts,
// gateway-udp.test.ts, …). Each test file takes its own `net` (the second octet of every
// address), so labs of different files never share a subnet.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LabProcess } from '../../src/netlab/lab.js';
import { waitForPort, withLab, type Host, type Lab } from './lab.js';

/** The lab's IPv4 addresses, all in 10.<net>.0.0/16, one /24 per link. */
export interface GatewayLabAddresses {
  /** lan's address; its default route is gwLan. */
  lanClient: string;
  /** gw on the LAN link (the LAN's router, where tranproxy captures). */
  gwLan: string;
  /** gw on the link to the node. */
  gwNode: string;
  /** The upstream node, as the gateway reaches it. */
  node: string;
  /** The node on the link to the remote. */
  nodeSideOfRemote: string;
  /** The remote: gw has no route to it, only the node does. */
  remote: string;
  /** gw on the link to direct (direct's default route). */
  gwDirect: string;
  /** A server the gateway reaches directly. */
  direct: string;
}

export function gatewayLabAddresses(net: number): GatewayLabAddresses {
  const at = (link: number, host: number) => `10.${net}.${link}.${host}`;
  return {
    lanClient: at(1, 2),
    gwLan: at(1, 1),
    gwNode: at(2, 1),
    node: at(2, 2),
    nodeSideOfRemote: at(3, 1),
    remote: at(3, 2),
    gwDirect: at(4, 1),
    direct: at(4, 2),
  };
}

export interface GatewayLab {
  lan: Host;
  gw: Host;
  node: Host;
  remote: Host;
  direct: Host;
  /** gw's interface on the LAN link: what `tranproxy run -i` captures on. */
  lanIf: string;
  /** A scratch directory for config files, pid files, …; removed afterwards. */
  tmp: string;
  ip: GatewayLabAddresses;
}

export interface GatewayLabOptions {
  /** Second octet of the lab's addresses (10.<net>.x.y): unique per test file. */
  net: number;
  /** Name prefix of the scratch directory in the system temp dir, e.g. 'tpx-gw-'. */
  tmpPrefix: string;
  /**
   * Host names the node resolves to the remote (SOCKS5 CONNECT or Shadowsocks with a
   * domain): written to /etc/netns/<node netns>/hosts, which `ip netns exec` bind-mounts
   * over /etc/hosts; removed afterwards.
   */
  remoteNames?: readonly string[];
}

/**
 * Builds the gateway lab (links, addresses, routes, forwarding on gw; no processes), runs
 * `fn`, and always removes what it made: the scratch directory, the node's hosts file, and
 * the lab itself with every process started in it.
 */
export async function withGatewayLab(
  opts: GatewayLabOptions,
  fn: (g: GatewayLab, lab: Lab) => Promise<void>,
): Promise<void> {
  await withLab(async (lab) => {
    let g: GatewayLab | undefined;
    let hostsDir: string | undefined;
    try {
      const ip = gatewayLabAddresses(opts.net);
      const lan = lab.addHost('lan');
      const gw = lab.addHost('gw');
      const node = lab.addHost('node');
      const remote = lab.addHost('remote');
      const direct = lab.addHost('direct');
      const lanLink = lab.link(lan, gw, { a: [`${ip.lanClient}/24`], b: [`${ip.gwLan}/24`] });
      lab.link(gw, node, { a: [`${ip.gwNode}/24`], b: [`${ip.node}/24`] });
      lab.link(node, remote, { a: [`${ip.nodeSideOfRemote}/24`], b: [`${ip.remote}/24`] });
      lab.link(gw, direct, { a: [`${ip.gwDirect}/24`], b: [`${ip.direct}/24`] });
      lan.addRoute('default', ip.gwLan);
      direct.addRoute('default', ip.gwDirect);
      gw.enableForwarding();
      if (opts.remoteNames?.length) {
        hostsDir = `/etc/netns/${node.netns}`;
        mkdirSync(hostsDir, { recursive: true });
        writeFileSync(join(hostsDir, 'hosts'), `${ip.remote} ${opts.remoteNames.join(' ')}\n`);
      }
      g = { lan, gw, node, remote, direct, lanIf: lanLink.b, tmp: mkdtempSync(join(tmpdir(), opts.tmpPrefix)), ip };
      await fn(g, lab);
    } finally {
      if (hostsDir) rmSync(hostsDir, { recursive: true, force: true });
      if (g) rmSync(g.tmp, { recursive: true, force: true });
    }
  });
}

/** The gateway's capture: TPROXY on gw's LAN interface, IPv4, private destinations too. */
export function gatewayCapture(g: GatewayLab): string[] {
  return ['--mode', 'tproxy', '--capture', 'prerouting', '-i', g.lanIf, '--family', 'ipv4', '--no-bypass-private'];
}

/** `tranproxy run` arguments for the gateway: its capture, a 3 s connect timeout, then `extra`. */
export function gatewayRunArgs(g: GatewayLab, extra: readonly string[]): string[] {
  return ['run', ...gatewayCapture(g), '--connect-timeout', '3s', ...extra];
}

/**
 * From `h`: one UDP socket sends each message to ip:port and waits for one reply each;
 * returns "DATA ADDR PORT" per message, or "timeout".
 */
export async function udpExchange(
  h: Host,
  ip: string,
  port: number,
  messages: string[],
  timeoutS = 3,
): Promise<string[]> {
  const script = [
    'import socket,sys',
    's=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)',
    `s.settimeout(${timeoutS})`,
    'for m in sys.argv[3:]:',
    '    s.sendto(m.encode(),(sys.argv[1],int(sys.argv[2])))',
    '    try:',
    '        d,a=s.recvfrom(65535)',
    '        print(d.decode(),a[0],a[1],flush=True)',
    '    except socket.timeout:',
    '        print("timeout",flush=True)',
  ].join('\n');
  const r = await h.run('python3', ['-c', script, ip, String(port), ...messages], { allowFailure: true });
  return r.stdout.trim().split('\n').filter(Boolean);
}

/** A microsocks SOCKS5 node listening on `ip`:`port` in `node` (with user/password when `auth`). */
export async function microsocks(node: Host, ip: string, port: number, auth?: [string, string]): Promise<LabProcess> {
  const p = node.spawn('microsocks', ['-i', ip, '-p', String(port), ...(auth ? ['-u', auth[0], '-P', auth[1]] : [])]);
  await waitForPort(node, port);
  return p;
}
