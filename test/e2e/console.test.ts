// Issue 9 end to end: the web console in a real browser (Debian's chromium driven by
// playwright-core) against a real gateway in a netns lab with a real Shadowsocks node.
//
//   lan ─ gw ─ node (ss-server) ─ web (HTTP + TCP echo peers)
//
// The gateway has no route to `web`: only the node does, so a LAN host reaches `web` only
// when the switch is on and the TCP node is the ss node. Chromium runs inside the gateway's
// netns (a wrapper script does `ip netns exec`; playwright talks to it over a pipe), so it
// reaches the console on the gateway's loopback without touching the host's network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import {
  assertFits,
  buildConsoleLab,
  startNodeLabPeers,
  CHROMIUM,
  launchChromiumIn,
  pageApi,
  setConsolePassword,
} from '../helpers/console-lab.js';
import { peerPath, startTranproxy, waitForPort, withLab } from '../helpers/lab.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = join(ROOT, 'test/.artifacts/console');
const NET = 75;
const NODE_IP = `10.${NET}.2.2`;
const WEB = `10.${NET}.3.2`;
const NODE_SIDE_OF_WEB = `10.${NET}.3.1`;
const LAN_CLIENT = `10.${NET}.1.2`;
const CONSOLE = '127.0.0.1:8080';
const BASE = `http://${CONSOLE}/`;
const PASSWORD = 'correct horse battery staple';
const SS_PORT = 8388;
const SS_LINK = `ss://${Buffer.from('aes-256-gcm:lab-secret').toString('base64url')}@${NODE_IP}:${SS_PORT}#lab-ss`;
const CHECK_TARGET = `${WEB}:80`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function nftRuleset(gw: Host): Promise<string> {
  return (await gw.run('nft', ['list', 'ruleset'])).stdout;
}

async function curlFromLan(lan: Host, url: string): Promise<{ status: number | null; client?: string }> {
  const r = await lan.run('curl', ['-sS', '--max-time', '5', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return {
    status: r.status,
    client: line ? (JSON.parse(line) as { client: { address: string } }).client.address : undefined,
  };
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

interface ConsoleState {
  enabled: boolean;
  tcpNode: string;
  nodes: { name: string; type: string; server: string; port: number }[];
  rules: Record<string, unknown>[];
  applied: boolean;
}

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };
const PAGES = ['settings', 'nodes', 'rules', 'dns', 'live', 'logs', 'check'];

/** Every page at the current size, each once its content is there (no fixed sleeps). */
async function shootAll(page: Page, lang: string, size: string): Promise<void> {
  for (const p of PAGES) {
    await gotoPage(page, p);
    await page.locator('main .card').first().waitFor();
    if (p === 'live') await page.locator('.live-dot.open').waitFor();
    if (p === 'logs') await page.locator('ol.logs li').first().waitFor();
    if (p === 'check') {
      await page.click('form button[type="submit"]');
      await page
        .locator(`table.check tr[data-target="${CHECK_TARGET}"] td.probe-node .good`)
        .waitFor({ timeout: 30_000 });
    }
    await assertFits(page, `${lang} ${p} ${size}`);
    await shoot(page, `${lang}-${p}-${size}`);
  }
}

/** English words of the console's own UI left on a Chinese page (user data, code and details excluded). */
async function assertNoEnglish(page: Page): Promise<void> {
  const text = await page.evaluate(() => {
    const copy = document.body.cloneNode(true) as HTMLElement;
    for (const el of copy.querySelectorAll('code, .mono, details, #lang-toggle, .node-name, option, .sr-only'))
      el.remove();
    return copy.innerText || copy.textContent || '';
  });
  const m =
    /\b(Save|Revert|Delete|Edit|Add|Remove|Refresh|Import|Test|Close|Filter|Source|Destination|Domain|Nodes?|Rules?|Settings|Check|Targets?|Direct|Through|Loading|Details|Switch|Subscriptions?|Throughput|Connections?|Resolver|Cache|failed|direct|reject|connect|handshake|Log out|on|off)\b/.exec(
      text,
    );
  assert.equal(
    m?.[0],
    undefined,
    `English left on the Chinese page: …${m ? text.slice(Math.max(0, m.index - 40), m.index + 40) : ''}…`,
  );
}

async function gotoPage(page: Page, name: string): Promise<void> {
  const link = `nav a[href="#/${name}"]`;
  const moved = (await page.$(`${link}[aria-current="page"]`)) === null;
  await page.click(link);
  await page.waitForSelector(`${link}[aria-current="page"]`);
  // The console moves focus to the page heading after navigating (an effect that may run a
  // little later under load): wait for it, so it cannot steal focus from what we focus next.
  if (moved) await page.waitForFunction(() => document.activeElement?.matches('main h1') === true);
}

/** Focus `selector` and wait until it really has the focus (nothing re-rendered it away). */
async function focusOn(page: Page, selector: string): Promise<void> {
  await page.focus(selector);
  await page.waitForFunction((sel) => document.activeElement?.matches(sel) === true, selector);
}

test('ui-dist/ (built by npm run build, shipped in the package) is the build of the current ui/ sources', async () => {
  const out = mkdtempSync(join(tmpdir(), 'tpx-ui-'));
  try {
    const { build } = await import('vite');
    await build({
      configFile: join(ROOT, 'ui/vite.config.ts'),
      logLevel: 'silent',
      build: { outDir: out, emptyOutDir: true },
    });
    const list = (dir: string) =>
      [...readdirSync(dir), ...readdirSync(join(dir, 'assets')).map((f) => `assets/${f}`)].sort();
    assert.deepEqual(list(join(ROOT, 'ui-dist')), list(out), 'ui-dist/ is stale: run npm run build');
    assert.equal(readFileSync(join(ROOT, 'ui-dist/index.html'), 'utf8'), readFileSync(join(out, 'index.html'), 'utf8'));
    // Small, and nothing inline or remote (CSP default-src 'self', no internet).
    const html = readFileSync(join(out, 'index.html'), 'utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|<style|\bstyle=|https?:\/\//);
    const { gzipSync } = await import('node:zlib');
    const gz = list(out)
      .filter((f) => f.startsWith('assets/'))
      .reduce((n, f) => n + gzipSync(readFileSync(join(out, f))).length, 0);
    assert.ok(gz < 100_000, `the UI is ${gz} bytes gzipped`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('web console in chromium: login, add an ss:// node, switch on, live connection, check, invalid rule, CSRF refused, switch off', {
  timeout: 240_000,
}, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup-deps.sh (Debian package chromium)`);
  assert.ok(existsSync(join(ROOT, 'ui-dist/index.html')), 'ui-dist/ is not built: npm run build:ui');
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), 'tpx-console-'));
  let browser: Browser | undefined;
  try {
    await withLab(
      async (lab) => {
        const cl = buildConsoleLab(lab, NET, { node: true });
        const { lan, gw, lanIf } = cl;
        await startNodeLabPeers(cl, 'lab-secret', SS_PORT);

        // The gateway: switch off, no nodes; one rule so "state unchanged" means something.
        const config = join(tmp, 'gateway.yaml');
        writeFileSync(
          config,
          [
            '# gateway for the console e2e test',
            'mode: tproxy',
            'capture: prerouting',
            `in-interfaces: [${lanIf}]`,
            'family: ipv4',
            'connect-timeout: 3s',
            'enabled: false',
            'default: direct',
            'rules:',
            '  - domain-suffix: [corp.example]',
            '    outbound: direct',
            `check-targets: ["${CHECK_TARGET}"]`,
            'console:',
            `  test-url: http://${WEB}/generate_204`,
            'dns:',
            '  fake-ip: { enabled: true }',
            '',
          ].join('\n'),
          { mode: 0o600 },
        );
        await setConsolePassword(gw, config, PASSWORD);
        assert.match(readFileSync(config, 'utf8'), /password-hash: .?scrypt\$/);
        assert.doesNotMatch(readFileSync(config, 'utf8'), new RegExp(PASSWORD), 'the password itself is never stored');
        const runArgs = ['run', '--config', config, '--console', CONSOLE, '--no-bypass-private'];
        let proxy = await startTranproxy(gw, runArgs, { timeoutMs: 20_000 });
        const failedRequests: string[] = [];
        try {
          await proxy.waitForOutput(/console ready/);
          assert.doesNotMatch(await nftRuleset(gw), /table inet tranproxy/, 'switch off at start: no capture rules');
          // Without the switch the LAN host cannot reach `web` (the gateway has no route to it).
          assert.notEqual((await curlFromLan(lan, `http://${WEB}/`)).client, NODE_SIDE_OF_WEB);

          // A static server in the gateway's netns on another port: a subscription to import, and
          // a page of another origin for the CSRF test (a page fulfilled by playwright would be
          // refused by chromium's own local-network checks, which is not what that tests).
          const site = join(tmp, 'site');
          mkdirSync(site);
          writeFileSync(join(site, 'index.html'), '<!doctype html><title>evil</title><p>another site</p>');
          const subLinks = [`socks5://${NODE_IP}:1080#sub-socks`, `http://${NODE_IP}:3128#sub-http`];
          writeFileSync(join(site, 'sub.txt'), Buffer.from(subLinks.join('\n')).toString('base64'));
          gw.spawn('python3', ['-m', 'http.server', '8099', '--bind', '127.0.0.1', '--directory', site]);
          await waitForPort(gw, 8099);
          const SUB_URL = 'http://127.0.0.1:8099/sub.txt';

          browser = await launchChromiumIn(gw, tmp);
          const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
          const page = await context.newPage();
          page.setDefaultTimeout(15_000);
          const cspViolations: string[] = [];
          const pageErrors: string[] = [];
          const watch = (p: Page, expectFailures: () => boolean) => {
            p.on('console', (m) => {
              if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
            });
            p.on('pageerror', (e) => pageErrors.push(e.message));
            p.on('requestfailed', (r) => {
              // An EventSource torn down by a page change or logout is not a failure, nor is a request while the gateway is stopped on purpose.
              if (!r.url().endsWith('/api/events') && !expectFailures())
                failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
            });
          };
          let gatewayStopped = false;
          watch(page, () => gatewayStopped);

          // ── Login: a wrong password first.
          await page.goto(BASE);
          await page.fill('input[name="password"]', 'not the password');
          await page.click('button[type="submit"]');
          await page.waitForSelector('.field-error[data-for="password"]:has-text("Wrong password")');
          assert.equal(await page.locator('nav').count(), 0, 'a wrong password does not log in');
          await shoot(page, 'login-wrong-password');
          await page.fill('input[name="password"]', PASSWORD);
          await page.click('button[type="submit"]');
          await page.waitForSelector('nav a[aria-current="page"]');
          await page.waitForSelector('button[role="switch"][name="enabled"][aria-checked="false"]');
          await shoot(page, 'settings-off');

          // ── Nodes: paste the ss:// link of the running ss-server.
          await gotoPage(page, 'nodes');
          await page.fill('textarea[name="links"]', SS_LINK);
          await page.click('button:has-text("Add")');
          await page.waitForSelector('p.ok[role="status"]:has-text("lab-ss")');
          await page.waitForSelector('li.node[data-node="lab-ss"]');
          let st = await pageApi<ConsoleState>(page, '/api/state');
          assert.deepEqual(
            st.nodes.map((n) => [n.name, n.type, n.server, n.port]),
            [['lab-ss', 'ss', NODE_IP, SS_PORT]],
          );
          assert.match(readFileSync(config, 'utf8'), /lab-ss/, 'the node is saved to the config file');
          // An invalid link: the error is shown next to the textarea.
          await page.fill('textarea[name="links"]', 'ss://not-a-link');
          await page.click('button:has-text("Add")');
          await page.waitForSelector('.field-error[data-for="links"]:not([hidden])');
          assert.equal(
            await page.locator('.field-error[data-for="links"] .err-text').innerText(),
            'None of the links could be added: their kind is not supported or they cannot be read.',
          );
          // Latency test through the node: an HTTP GET of the test URL through it.
          await page.click('button[aria-label="Test latency of lab-ss"]');
          await page.waitForSelector('li.node[data-node="lab-ss"] .node-test .delay');
          assert.match(await page.locator('li.node[data-node="lab-ss"] .node-test').innerText(), /^[\d.]+ ms$/);
          // A subscription (a base64 list of links): import, refresh, remove.
          await page.fill('input[name="url"]', SUB_URL);
          await page.click('button:has-text("Import")');
          await page.waitForSelector('p.ok[role="status"]:has-text("Subscription imported")');
          await page.waitForSelector('li.node[data-node="sub-socks"]');
          await page.waitForSelector('li.node[data-node="sub-http"]');
          await page.waitForSelector(`ul.subs li:has-text("${SUB_URL}"):has-text("2 nodes")`);
          await shoot(page, 'nodes');
          await page.click(`ul.subs li:has-text("${SUB_URL}") button:has-text("Refresh")`);
          await page.waitForSelector('p.ok[role="status"]:has-text("Subscription refreshed")');
          page.once('dialog', (d) => void d.accept());
          await page.click(`ul.subs li:has-text("${SUB_URL}") button:has-text("Remove")`);
          await page.waitForSelector('p.ok[role="status"]:has-text("Subscription removed")');
          await page.waitForSelector('li.node[data-node="sub-socks"]', { state: 'detached' });
          st = await pageApi<ConsoleState>(page, '/api/state');
          assert.deepEqual(
            st.nodes.map((n) => n.name),
            ['lab-ss'],
            'the subscription took its nodes along',
          );

          // ── Settings: lab-ss as the TCP node, then the switch on.
          await gotoPage(page, 'settings');
          await page.selectOption('select[name="tcpNode"]', 'lab-ss');
          await page.click('form button[type="submit"]:has-text("Save")');
          await page.waitForSelector('p.ok[role="status"]:has-text("Settings saved")');
          // The switch by keyboard: focus it, press Space.
          await focusOn(page, 'button[role="switch"][name="enabled"]');
          await page.keyboard.press('Space');
          await page.waitForSelector('button[role="switch"][name="enabled"][aria-checked="true"]');
          await page.waitForSelector('p.ok[role="status"]:has-text("Switched on")');
          await page.waitForSelector('#switch-pill:has-text("on")');
          st = await pageApi<ConsoleState>(page, '/api/state');
          assert.equal(st.enabled, true);
          assert.equal(st.applied, true);
          assert.equal(st.tcpNode, 'lab-ss');
          assert.match(await nftRuleset(gw), /table inet tranproxy/, 'switch on: the capture rules are in the kernel');
          assert.match(readFileSync(config, 'utf8'), /enabled: true/);
          await shoot(page, 'settings-on');
          // A LAN host now reaches `web` through the ss node.
          const through = await curlFromLan(lan, `http://${WEB}/`);
          assert.equal(through.client, NODE_SIDE_OF_WEB, 'the web server sees the node, not the client');

          // ── Live: a LAN host's held-open connection appears without a reload.
          await gotoPage(page, 'live');
          await page.waitForSelector('.live-dot.open');
          const hold: LabProcess = lan.spawn('python3', [peerPath('hold_client.py'), WEB, '7']);
          await hold.waitForOutput(/^connected$/m);
          hold.child.stdin!.write('ping through the node\n');
          await hold.waitForOutput(/^echo: ping through the node$/m);
          const row = page.locator(`table.conns tbody tr:has(td[data-col="dst"]:text-is("${WEB}:7"))`);
          await row.waitFor();
          assert.match(
            await row.locator('td[data-col="src"]').innerText(),
            new RegExp(`^${LAN_CLIENT.replace(/\./g, '\\.')}:\\d+$`),
          );
          await page.waitForSelector(`table.conns tbody tr:has(td[data-col="node"]:text-is("lab-ss"))`);
          // Live byte counts: the 22-byte line went up and came back.
          await page.waitForFunction(
            (dst) => {
              const tr = [...document.querySelectorAll('table.conns tbody tr')].find(
                (r) => r.querySelector('td[data-col="dst"]')?.textContent === dst,
              );
              return (
                tr?.querySelector('td[data-col="up"]')?.textContent === '22 B' &&
                tr?.querySelector('td[data-col="down"]')?.textContent === '22 B'
              );
            },
            `${WEB}:7`,
            { timeout: 10_000 },
          );
          await page.waitForFunction(() => document.querySelectorAll('.spark polyline').length === 2, undefined, {
            timeout: 10_000,
          });
          await shoot(page, 'live');
          // Close it from the page: the row goes and the LAN host's connection is cut.
          await row.locator('button:has-text("Close")').click();
          await row.waitFor({ state: 'detached', timeout: 10_000 });
          hold.child.stdin!.write('are you there\n');
          await hold.waitForOutput(/^closed$/m);

          // ── Check: the target is unreachable direct (no route) and reachable through the node.
          await gotoPage(page, 'check');
          await page.click('button:has-text("Run check")');
          const result = page.locator(`table.check tr[data-target="${CHECK_TARGET}"]`);
          await result.waitFor({ timeout: 30_000 });
          await result.locator('td.probe-node .good').waitFor();
          assert.match(await result.locator('td.probe-node').innerText(), /ok · [\d.]+ ms/);
          assert.match(
            await result.locator('td.probe-direct').innerText(),
            /✗/,
            'direct has no route from the gateway',
          );
          await shoot(page, 'check');

          // ── Rules: an invalid rule is refused with its error next to the field; nothing changes.
          await gotoPage(page, 'rules');
          const rulesBefore = (await pageApi<ConsoleState>(page, '/api/state')).rules;
          const fileBefore = readFileSync(config, 'utf8');
          const rulesetBefore = await nftRuleset(gw);
          await page.click('button:has-text("+ Add rule")');
          await page.selectOption('ol.rules li:nth-child(2) .matcher select', 'cidr');
          await page.fill('input[name="rules[1].cidr"]', '10.0.0.0/99');
          await page.click('button:has-text("Save rules")');
          const ruleErr = page.locator('.field-error[data-for="rules[1].cidr"]:not([hidden])');
          await ruleErr.waitFor();
          assert.match(await ruleErr.innerText(), /\S/);
          assert.equal(await page.locator('input[name="rules[1].cidr"]').getAttribute('aria-invalid'), 'true');
          await shoot(page, 'rules-invalid');
          assert.deepEqual(
            (await pageApi<ConsoleState>(page, '/api/state')).rules,
            rulesBefore,
            'refused: the rules in force are unchanged',
          );
          assert.equal(readFileSync(config, 'utf8'), fileBefore, 'refused: the config file is unchanged');
          assert.equal(await nftRuleset(gw), rulesetBefore, 'refused: the kernel rules are unchanged');
          assert.equal(
            (await curlFromLan(lan, `http://${WEB}/`)).client,
            NODE_SIDE_OF_WEB,
            'refused: traffic still flows through the node',
          );

          // DNS: an invalid nameserver is refused next to its field; nothing changes.
          await gotoPage(page, 'dns');
          const dnsFileBefore = readFileSync(config, 'utf8');
          await page.fill('textarea[name="dns.nameservers"]', 'not-an-ip');
          await page.click('button[type="submit"]:has-text("Save")');
          await page.locator('.field-error[data-for="dns.nameservers"]:not([hidden])').waitFor();
          // The console focuses the refused field on the next animation frame: wait for that state.
          await page.waitForFunction(
            () => document.activeElement?.getAttribute('name') === 'dns.nameservers',
            undefined,
            { timeout: 10_000 },
          );
          assert.equal(readFileSync(config, 'utf8'), dnsFileBefore, 'refused: the config file is unchanged');
          await shoot(page, 'dns');

          // ── CSRF: a change without the token from the console's own page is refused…
          const noToken = await page.evaluate(async () => {
            const r = await fetch('/api/settings', {
              method: 'PUT',
              credentials: 'same-origin',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ enabled: false }),
            });
            return r.status;
          });
          assert.equal(noToken, 403, 'no X-CSRF-Token: 403');
          const wrongToken = await page.evaluate(async () => {
            const r = await fetch('/api/settings', {
              method: 'PUT',
              credentials: 'same-origin',
              headers: { 'content-type': 'application/json', 'x-csrf-token': 'forged' },
              body: JSON.stringify({ enabled: false }),
            });
            return r.status;
          });
          assert.equal(wrongToken, 403, 'wrong X-CSRF-Token: 403');
          // …and so is one from a page on another origin (same site, so the browser even sends the cookie).
          const evil = await context.newPage();
          await evil.goto('http://127.0.0.1:8099/');
          // A "simple" cross-origin POST (no preflight): the browser sends it, cookie included.
          const evilLink = `socks5://${NODE_IP}:1080#evil`;
          const crossResp = evil.waitForResponse((r) => r.url() === `${BASE}api/nodes`);
          await evil.evaluate(
            async ([url, links]) => {
              try {
                await fetch(url!, {
                  method: 'POST',
                  mode: 'no-cors',
                  credentials: 'include',
                  headers: { 'content-type': 'text/plain' },
                  body: JSON.stringify({ links }),
                });
              } catch {
                /* opaque */
              }
            },
            [`${BASE}api/nodes`, evilLink],
          );
          assert.equal((await crossResp).status(), 403, 'cross-origin change: 403');
          await evil.close();
          st = await pageApi<ConsoleState>(page, '/api/state');
          assert.equal(st.enabled, true, 'the refused requests changed nothing');
          assert.deepEqual(
            st.nodes.map((n) => n.name),
            ['lab-ss'],
            'the refused cross-origin request added no node',
          );
          assert.match(await nftRuleset(gw), /table inet tranproxy/);

          // ── Switch off: the rules are gone from the kernel.
          await gotoPage(page, 'settings');
          await page.click('button[role="switch"][name="enabled"]');
          await page.waitForSelector('button[role="switch"][name="enabled"][aria-checked="false"]');
          await page.waitForSelector('p.ok[role="status"]:has-text("Switched off")');
          let ruleset = '';
          for (let i = 0; i < 50; i++) {
            ruleset = await nftRuleset(gw);
            if (!/table inet tranproxy/.test(ruleset)) break;
            await sleep(100);
          }
          assert.doesNotMatch(ruleset, /table inet tranproxy/, 'switch off: no tranproxy table');
          assert.match(readFileSync(config, 'utf8'), /enabled: false/);
          await shoot(page, 'settings-off-again');

          // Phone-sized screenshots of every page.
          await page.setViewportSize({ width: 390, height: 844 });
          await shootAll(page, 'en', 'phone');
          // Log out: the API is closed again.
          await page.click('#logout');
          await page.waitForSelector('input[name="password"]');
          assert.equal(await page.evaluate(async () => (await fetch('/api/state')).status), 401);
          await shoot(page, 'login-phone');

          // ── The same tasks in Chinese, chosen from the browser's language, phone first.
          const zhContext = await browser.newContext({ viewport: PHONE, locale: 'zh-CN' });
          const zh = await zhContext.newPage();
          zh.setDefaultTimeout(15_000);
          watch(zh, () => gatewayStopped);
          await zh.goto(BASE);
          await zh.locator('#login-h:has-text("tranproxy 控制台")').waitFor();
          assert.equal(await zh.evaluate(() => document.documentElement.lang), 'zh-CN');
          await zh.fill('input[name="password"]', 'not the password');
          await zh.click('button[type="submit"]');
          await zh.locator('.field-error[data-for="password"]:has-text("密码错误")').waitFor();
          await shoot(zh, 'zh-login-wrong-password-phone');
          await zh.fill('input[name="password"]', PASSWORD);
          await zh.click('button[type="submit"]');
          await zh.locator('nav a[aria-current="page"]').waitFor();
          assert.deepEqual(await zh.locator('nav a').allInnerTexts(), [
            '设置',
            '节点',
            '规则',
            'DNS',
            '连接',
            '日志',
            '检测',
          ]);
          // The switch on from the Chinese page: switch and pill show what /api/state says.
          await zh.locator('button[role="switch"][name="enabled"][aria-checked="false"]').click();
          await zh.locator('button[role="switch"][name="enabled"][aria-checked="true"]').waitFor();
          await zh.locator('p.ok[role="status"]:has-text("已开启")').waitFor();
          await zh.locator('#switch-pill[data-state="on"]:has-text("已开启")').waitFor();
          assert.equal((await pageApi<ConsoleState>(zh, '/api/state')).enabled, true);
          await assertNoEnglish(zh);
          // An invalid rule: the error next to the field is a Chinese sentence, the gateway's words one click away.
          await gotoPage(zh, 'rules');
          await zh.click('button:has-text("+ 添加规则")');
          await zh.selectOption('ol.rules li:nth-child(2) .matcher select', 'cidr');
          await zh.fill('input[name="rules[1].cidr"]', '10.0.0.0/99');
          await zh.click('button:has-text("保存规则")');
          const zhRuleErr = zh.locator('.field-error[data-for="rules[1].cidr"]:not([hidden])');
          await zhRuleErr.waitFor();
          assert.equal(
            await zhRuleErr.locator('.err-text').innerText(),
            '“10.0.0.0/99”不是地址段：请写成 192.168.1.0/24 这样的格式。',
          );
          await zhRuleErr.locator('summary:has-text("详情")').click();
          assert.match(await zhRuleErr.locator('details code').innerText(), /is not a CIDR/);
          await zh.locator('.form-status .error:has-text("未保存")').waitFor();
          await assertNoEnglish(zh);
          await shoot(zh, 'zh-rules-invalid-phone');
          await zh.click('button:has-text("撤销更改")');
          // DNS: the address LAN hosts use (the gateway's LAN address, port 53) and the fake-IP range.
          await gotoPage(zh, 'dns');
          await zh.locator('#dns-listen:has-text("10.75.1.1")').waitFor();
          await zh.locator('#dns-fake-range:has-text("198.18.0.0/15")').waitFor();
          await assertNoEnglish(zh);
          // Check: "no route" in plain Chinese; the errno is under 详情 only.
          await gotoPage(zh, 'check');
          await zh.click('form button[type="submit"]');
          const zhResult = zh.locator(`table.check tr[data-target="${CHECK_TARGET}"]`);
          await zhResult.locator('td.probe-node .good').waitFor({ timeout: 30_000 });
          const direct = zhResult.locator('td.probe-direct');
          assert.equal(
            await direct.locator('.err-text').innerText(),
            `没有到 ${CHECK_TARGET} 的路由：无法到达该网络。`,
          );
          await assertNoEnglish(zh);
          await direct.locator('summary').click();
          assert.match(await direct.locator('details code').innerText(), /ENETUNREACH/);
          await shootAll(zh, 'zh', 'phone');

          // ── The gateway stops: the page says it is not answering; a change fails and the switch does not flip.
          await gotoPage(zh, 'settings');
          gatewayStopped = true;
          await proxy.stop();
          await zh.locator('#gateway-down:has-text("网关没有响应")').waitFor();
          await zh.locator('button[role="switch"][name="enabled"]').click();
          await zh.locator('.form-status .error:has-text("网关没有响应")').waitFor();
          assert.equal(
            await zh.locator('button[role="switch"][name="enabled"]').getAttribute('aria-checked'),
            'true',
            'no optimistic flip',
          );
          await shoot(zh, 'zh-gateway-down-phone');
          // …and comes back (a restart: its sessions are gone): a re-login prompt instead of stale data.
          proxy = await startTranproxy(gw, runArgs, { timeoutMs: 20_000 });
          await proxy.waitForOutput(/console ready/);
          gatewayStopped = false;
          await zh.locator('#session-ended').waitFor({ timeout: 20_000 });
          assert.equal(await zh.locator('nav').count(), 0, 'no stale pages after the restart');
          await shoot(zh, 'zh-session-ended-phone');
          await zh.fill('input[name="password"]', PASSWORD);
          await zh.click('button[type="submit"]');
          await zh.locator('#switch-pill[data-state="on"]').waitFor();

          // Desktop size in Chinese; then the header's language switch (remembered) and the theme (remembered).
          await zh.setViewportSize(DESKTOP);
          await shootAll(zh, 'zh', 'desktop');
          await zh.click('#lang-toggle');
          await zh.locator('nav a:text-is("Settings")').waitFor();
          await zh.reload();
          await zh.locator('nav a:text-is("Settings")').waitFor();
          assert.equal(await zh.evaluate(() => document.documentElement.lang), 'en');
          const dark = await zh.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches);
          await zh.click('#theme-toggle');
          await zh.locator(`html[data-theme="${dark ? 'light' : 'dark'}"]`).waitFor();
          await zh.reload();
          await zh.locator(`html[data-theme="${dark ? 'light' : 'dark'}"]`).waitFor({ state: 'attached' });
          await zh.locator('main .card').first().waitFor();
          await shoot(zh, `en-theme-${dark ? 'light' : 'dark'}-desktop`);
          await zh.click('#lang-toggle');
          await zh.locator('nav a:text-is("设置")').waitFor();
          await zhContext.close();

          assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations');
          assert.deepEqual(pageErrors, [], 'no script errors');
          await hold.stop();
          await browser.close();
          browser = undefined;
        } catch (e) {
          // The gateway's log explains most failures.
          process.stderr.write(`--- failed requests: ${JSON.stringify(failedRequests)}\n`);
          process.stderr.write(`--- tranproxy output (last 6000 chars):\n${proxy.output().slice(-6000)}\n---\n`);
          throw e;
        }
        await proxy.stop();
      },
      { prefix: 'tpxcon' },
    );
  } finally {
    await browser?.close().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
});
