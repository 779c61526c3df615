// The console e2e tests' shared lab and browser: a LAN host, the gateway and a web host (behind
// an ss node when asked), chromium inside the gateway's netns, and logging in.
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Host, Lab } from '../../src/netlab/lab.js';
import { startPeer, tranproxyBin, waitForPort } from './lab.js';

export const CHROMIUM = '/usr/bin/chromium';

export interface ConsoleLab {
  lan: Host;
  gw: Host;
  web: Host;
  /** Between the gateway and `web` when built with `node: true`. */
  node?: Host;
  /** The gateway's interface towards the LAN (its `in-interfaces`). */
  lanIf: string;
  ip: { lanClient: string; node: string; webSide: string; web: string };
}

/**
 * lan (10.NET.1.2) ─ gw (10.NET.1.1) ─ web (10.NET.3.2), or with `node`: gw (10.NET.2.1) ─ node
 * (10.NET.2.2, 10.NET.3.1) ─ web, where the gateway has no route to `web`: only the node reaches it.
 */
export function buildConsoleLab(lab: Lab, net: number, opts: { node: true }): ConsoleLab & { node: Host };
export function buildConsoleLab(lab: Lab, net: number, opts: { node: false }): ConsoleLab;
export function buildConsoleLab(lab: Lab, net: number, opts: { node: boolean }): ConsoleLab {
  const p = `10.${net}`;
  const ip = { lanClient: `${p}.1.2`, node: `${p}.2.2`, webSide: `${p}.3.1`, web: `${p}.3.2` };
  const lan = lab.addHost('lan');
  const gw = lab.addHost('gw');
  const node = opts.node ? lab.addHost('node') : undefined;
  const web = lab.addHost('web');
  const l = lab.link(lan, gw, { a: [`${ip.lanClient}/24`], b: [`${p}.1.1/24`] });
  if (node) {
    lab.link(gw, node, { a: [`${p}.2.1/24`], b: [`${ip.node}/24`] });
    lab.link(node, web, { a: [`${ip.webSide}/24`], b: [`${ip.web}/24`] });
  } else {
    lab.link(gw, web, { a: [`${ip.webSide}/24`], b: [`${ip.web}/24`] });
    web.addRoute('default', ip.webSide);
  }
  lan.addRoute('default', `${p}.1.1`);
  gw.enableForwarding();
  return { lan, gw, web, node, lanIf: l.b, ip };
}

/**
 * The peers of the lab with a node: on `web` an HTTP server echoing headers (80) and a TCP echo
 * (7); on the node an ss-server (aes-256-gcm) with `secret` on `port`.
 */
export async function startNodeLabPeers(l: ConsoleLab & { node: Host }, secret: string, port: number): Promise<void> {
  await startPeer(l.web, 'echo_headers', 80);
  await startPeer(l.web, 'tcp_echo', 7);
  l.node.spawn('ss-server', ['-s', l.ip.node, '-p', String(port), '-k', secret, '-m', 'aes-256-gcm']);
  await waitForPort(l.node, port);
}

/** Sets the console password in `config` with `tranproxy console passwd`, run in the gateway's netns. */
export async function setConsolePassword(gw: Host, config: string, password: string): Promise<void> {
  const passwd = await gw.run(
    process.execPath,
    [tranproxyBin(), 'console', 'passwd', '--config', config, '--password-stdin'],
    { input: `${password}\n` },
  );
  assert.equal(passwd.status, 0, passwd.stderr);
}

/**
 * Chromium inside the gateway's netns (a wrapper script in `dir` does `ip netns exec`; playwright
 * talks to it over a pipe), so it reaches the console on the gateway's loopback.
 */
export async function launchChromiumIn(gw: Host, dir: string): Promise<Browser> {
  const wrapper = join(dir, 'chromium-in-netns.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${gw.netns} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return chromium.launch({
    executablePath: wrapper,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Opens the console at `base`, logs in and waits for the navigation. */
export async function loginPage(page: Page, base: string, password: string): Promise<void> {
  await page.goto(base);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await page.waitForSelector('nav a[aria-current="page"]');
}

/** The API as the logged-in page sees it (same cookies); for assertions only. */
export async function pageApi<T>(page: Page, path: string): Promise<T> {
  return page.evaluate(async (p) => (await fetch(p, { credentials: 'same-origin' })).json(), path) as Promise<T>;
}

/** Nothing wider than the window (a phone must not scroll sideways). */
export async function assertFits(page: Page, what: string): Promise<void> {
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  assert.ok(overflow <= 0, `${what}: ${overflow}px wider than the window`);
}
