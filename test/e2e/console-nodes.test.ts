// Issue 18 (Nodes, groups, import/export) and issue 17 items 5-6 (node tests and checks that
// tell the truth, UDP capture from the console) in a real Chromium against a real gateway:
//
//   lan ─ gw (tranproxy --console) ─ node (ss-server -u, microsocks) ─ remote (HTTP 204, UDP echo)
//          └─ direct (DNS server: srv.lab.test, HTTP 204)
//
// The gateway has no route to `remote`: only the nodes reach it. Every task runs in English
// and Chinese, at 1280×800 and 390×844, each in a fresh browser context (a new login), so
// results that survive are the gateway's. Screenshots go to test/.artifacts/console-nodes/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import type { Host } from '../../src/netlab/lab.js';
import {
  assertFits,
  CHROMIUM,
  launchChromiumIn,
  loginPage,
  pageApi,
  setConsolePassword,
} from '../helpers/console-lab.js';
import { udpExchange, withGatewayLab, type GatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';
import { until } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = join(ROOT, 'test/.artifacts/console-nodes');
const CONSOLE = '127.0.0.1:8080';
const BASE = `http://${CONSOLE}/`;
const PASSWORD = 'nodes page password';
const SS_SECRET = 'ss-lab-secret';
/** The secret as the ss:// link holds it (SIP002 base64url userinfo). */
const SS_USERINFO = Buffer.from(`aes-256-gcm:${SS_SECRET}`).toString('base64url');
const HK_LABEL = '🇭🇰 香港 01';
const JP_LABEL = '🇯🇵 日本 Tokyo';

interface State {
  tcpNode: string;
  udp: boolean;
  nodes: { name: string; label: string }[];
}
interface GroupState {
  name: string;
  now: string;
  members: { name: string; alive: boolean }[];
}

const COMBOS = [
  { lang: 'en', locale: 'en-US', size: 'desktop', viewport: { width: 1280, height: 800 } },
  { lang: 'zh', locale: 'zh-CN', size: 'phone', viewport: { width: 390, height: 844 } },
  { lang: 'en', locale: 'en-US', size: 'phone', viewport: { width: 390, height: 844 } },
  { lang: 'zh', locale: 'zh-CN', size: 'desktop', viewport: { width: 1280, height: 800 } },
] as const;

async function gotoPage(page: Page, name: string): Promise<void> {
  const link = `nav a[href="#/${name}"]`;
  await page.click(link);
  await page.waitForSelector(`${link}[aria-current="page"]`);
  await page.locator('main .card').first().waitFor();
}

/** The UDP part of tranproxy's nft table (empty: no UDP rule). */
async function udpRules(gw: Host): Promise<string> {
  const r = await gw.run('nft', ['list', 'ruleset'], { allowFailure: true });
  return r.stdout
    .split('\n')
    .filter((l) => /\budp\b/.test(l))
    .join('\n');
}

/** Gateway config: three nodes (one dead), a url-test and a select group, the DNS server on `direct`. */
function gatewayConfig(g: GatewayLab): string {
  const ss = `ss://${Buffer.from(`aes-256-gcm:${SS_SECRET}`).toString('base64url')}@${g.ip.node}:8388`;
  return [
    '# gateway for the Nodes page test',
    'mode: tproxy',
    'capture: prerouting',
    `in-interfaces: [${g.lanIf}]`,
    'family: ipv4',
    'proxy-user: none',
    'bypass-private: false',
    'connect-timeout: 3s',
    'enabled: true',
    'default: hk',
    'nodes:',
    `  dead: socks5://${g.ip.node}:1081   # nothing listens there`,
    `  hk: { uri: "${ss}", label: "${HK_LABEL}" }`,
    `  s5: socks5://${g.ip.node}:1080`,
    'groups:',
    `  auto: { type: url-test, members: [dead, hk, s5], url: "http://${g.ip.remote}/generate_204", interval: 5s }`,
    `  pick: { type: select, members: [s5, hk, direct], url: "http://${g.ip.remote}/generate_204", interval: 5s }`,
    `check-targets: ["${g.ip.remote}:80", "${g.ip.remote}:81", "srv.lab.test:80"]`,
    'dns:',
    `  nameservers: [${g.ip.direct}]`,
    'console:',
    `  test-url: http://${g.ip.remote}/generate_204`,
    '',
  ].join('\n');
}

/** The node list as shown: name, delay (ms, or null when failed/untested), in page order. */
async function shownOrder(page: Page): Promise<{ name: string; delay: number | null; failed: boolean }[]> {
  return page.$$eval('ul.nodes li.node', (lis) =>
    lis.map((li) => {
      const d = li.querySelector('.node-test .delay');
      return {
        name: li.getAttribute('data-node') ?? '',
        delay: d ? Number(d.getAttribute('data-delay')) : null,
        failed: li.querySelector('.node-test .bad') !== null,
      };
    }),
  );
}

async function waitForTests(page: Page, n: number): Promise<void> {
  await page.waitForFunction(
    (want) => document.querySelectorAll('ul.nodes .node-test .delay, ul.nodes .node-test .bad').length >= want,
    n,
    { timeout: 30_000 },
  );
}

/** Answered nodes first, by delay; then failed ones. */
function assertSorted(rows: { name: string; delay: number | null; failed: boolean }[], what: string): void {
  const answered = rows.filter((r) => r.delay !== null);
  const firstFailed = rows.findIndex((r) => r.failed);
  assert.ok(answered.length >= 3, `${what}: ${JSON.stringify(rows)}`);
  for (let i = 1; i < answered.length; i++)
    assert.ok(answered[i - 1]!.delay! <= answered[i]!.delay!, `${what}: not sorted by delay ${JSON.stringify(rows)}`);
  assert.ok(firstFailed >= answered.length, `${what}: a failed node before an answering one ${JSON.stringify(rows)}`);
}

test('Nodes page in chromium, en/zh × desktop/phone: Test all sorted and kept, labels, pick node and group, select member, truthful check, UDP switch, export/import', {
  timeout: 300_000,
}, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup-deps.sh`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  await withGatewayLab({ net: 94, tmpPrefix: 'tpx-console-nodes-' }, async (g) => {
    const { gw, node, remote, direct, lan, ip } = g;
    node.spawn('ss-server', ['-s', ip.node, '-p', '8388', '-k', SS_SECRET, '-m', 'aes-256-gcm', '-u']);
    node.spawn('microsocks', ['-i', ip.node, '-p', '1080']);
    await waitForPort(node, 8388);
    await waitForPort(node, 1080);
    const web = await startPeer(remote, 'http_204', 80, '0.0.0.0');
    const echo = await startPeer(remote, 'udp_echo', 5353, '0.0.0.0');
    await startPeer(direct, 'http_204', 80, '0.0.0.0');
    direct.spawn('python3', [join(ROOT, 'test/peers/dns_server.py'), '53', ip.direct, `srv.lab.test=${ip.direct}`]);
    await waitForPort(direct, 53);
    // A subscription with names as providers write them (flags, CJK).
    const site = join(g.tmp, 'site');
    mkdirSync(site);
    const sub = [`socks5://${ip.node}:1080#${encodeURIComponent(JP_LABEL)}`];
    writeFileSync(join(site, 'sub.txt'), Buffer.from(sub.join('\n')).toString('base64'));
    gw.spawn('python3', ['-m', 'http.server', '8099', '--bind', '127.0.0.1', '--directory', site]);
    await waitForPort(gw, 8099);

    const config = join(g.tmp, 'gateway.yaml');
    writeFileSync(config, gatewayConfig(g), { mode: 0o600 });
    await setConsolePassword(gw, config, PASSWORD);
    const proxy = await startTranproxy(gw, ['run', '--config', config, '--console', CONSOLE], { timeoutMs: 20_000 });
    let browser: Browser | undefined;
    try {
      await proxy.waitForOutput(/console ready/);
      assert.equal(await udpRules(gw), '', 'udp off at start: no UDP rule');
      browser = await launchChromiumIn(gw, g.tmp);
      let udpOn = false;
      for (const [i, c] of COMBOS.entries()) {
        const tag = `${c.lang}-${c.size}`;
        const context = await browser.newContext({ viewport: c.viewport, locale: c.locale, acceptDownloads: true });
        const page = await context.newPage();
        page.setDefaultTimeout(20_000);
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await loginPage(page, BASE, PASSWORD);
        assert.equal(await page.getAttribute('html', 'lang'), c.lang === 'zh' ? 'zh-CN' : 'en');

        // ── Nodes: results kept by the gateway show at once in a fresh context (after the first run).
        await gotoPage(page, 'nodes');
        if (i > 0) await waitForTests(page, 3);
        if (i === 0) {
          await page.fill('input[name="url"]', 'http://127.0.0.1:8099/sub.txt');
          await page.click('form.inline-form button[type="submit"]');
          await page.waitForSelector(`li.node .node-name:text-is("${JP_LABEL}")`);
        }
        assert.equal(await page.locator('li.node[data-node="hk"] .node-name').innerText(), HK_LABEL);
        await page.click('#test-all');
        await page.waitForSelector('#test-all:not([disabled])', { timeout: 30_000 });
        await waitForTests(page, 4);
        const rows = await shownOrder(page);
        assertSorted(rows, tag);
        assert.ok(rows.find((r) => r.name === 'dead')?.failed, 'the dead node failed');
        assert.ok(rows.find((r) => r.name === 'hk')?.delay !== null, 'the ss node answered the 204 URL');
        // Kept: another page and back, then a reload of the page.
        await gotoPage(page, 'settings');
        await gotoPage(page, 'nodes');
        await waitForTests(page, 4);
        assert.deepEqual(await shownOrder(page), rows, 'results kept when changing page');
        await page.reload();
        await page.waitForSelector('nav a[aria-current="page"]');
        await waitForTests(page, 4);
        assert.deepEqual(await shownOrder(page), rows, 'results kept after a reload');
        await assertFits(page, `${tag} nodes`);
        await page.screenshot({ path: join(SHOTS, `${tag}-nodes-tested.png`), fullPage: true });

        // ── Groups: chosen member and health; choose a select group's member; use a group by default.
        const auto = page.locator('li.group[data-group="auto"]');
        await auto.locator('li[data-member="dead"] .member-health.bad').waitFor({ timeout: 20_000 });
        // A group re-picks once every member's probe is back, while each member's health shows as
        // it comes: the first member ('dead') can still be the pick for a moment after it shows bad.
        let autoNow: string | undefined;
        await until(
          () => `url-test to leave the dead node (now ${autoNow})`,
          async () =>
            (autoNow = (await pageApi<GroupState[]>(page, '/api/groups')).find((x) => x.name === 'auto')?.now) !==
            'dead',
          20_000,
          200,
        );
        assert.ok(autoNow === 'hk' || autoNow === 's5', `url-test picks a live node (now ${autoNow})`);
        const member = i % 2 === 0 ? 'hk' : 's5';
        // The radio follows the gateway: it is checked once the data plane answered.
        await page.click(`li.group[data-group="pick"] li[data-member="${member}"] input[type="radio"]`);
        await page.waitForSelector(`li.group[data-group="pick"] li.chosen[data-member="${member}"]`);
        assert.equal((await pageApi<GroupState[]>(page, '/api/groups')).find((x) => x.name === 'pick')?.now, member);
        await auto.locator('button.use').click();
        await auto.locator('.tag.used').waitFor();
        assert.equal((await pageApi<State>(page, '/api/state')).tcpNode, 'auto');
        assert.match(readFileSync(config, 'utf8'), /\ndefault: auto\n/);
        assert.equal(
          (await pageApi<GroupState[]>(page, '/api/groups')).find((x) => x.name === 'pick')?.now,
          member,
          'the chosen member survives a reload of the configuration',
        );
        await page.screenshot({ path: join(SHOTS, `${tag}-groups.png`), fullPage: true });
        // ── Pick a node from the list.
        await page.click('li.node[data-node="hk"] button.use');
        await page.waitForSelector('li.node[data-node="hk"] .tag.used');
        assert.equal((await pageApi<State>(page, '/api/state')).tcpNode, 'hk');

        // ── Check through the ss node: the closed port is a failure; the name resolves with dns.nameservers.
        await gotoPage(page, 'check');
        await page.click('form button[type="submit"]');
        await page
          .locator(`table.check tr[data-target="${ip.remote}:81"] td.probe-node .bad`)
          .waitFor({ timeout: 30_000 });
        await page.locator(`table.check tr[data-target="${ip.remote}:80"] td.probe-node .good`).waitFor();
        await page.locator('table.check tr[data-target="srv.lab.test:80"] td.probe-direct .good').waitFor();
        await page.screenshot({ path: join(SHOTS, `${tag}-check.png`), fullPage: true });

        // ── UDP capture switched from Settings: the kernel rules and a real UDP flow follow.
        await gotoPage(page, 'settings');
        const udp = page.locator('button[role="switch"][name="udp"]');
        assert.equal(await udp.getAttribute('aria-checked'), String(udpOn));
        await udp.click();
        udpOn = !udpOn;
        await page.waitForSelector(`button[role="switch"][name="udp"][aria-checked="${udpOn}"]`);
        assert.equal((await pageApi<State>(page, '/api/state')).udp, udpOn);
        const flow = await udpExchange(lan, ip.remote, 5353, [`udp-${i}`], 2);
        if (udpOn) {
          assert.match(await udpRules(gw), /udp/, 'udp on: UDP TPROXY rules');
          assert.deepEqual(flow, [`udp-${i} ${ip.remote} 5353`], 'captured and relayed through the ss node');
          await echo.waitForOutput(new RegExp(`^${ip.nodeSideOfRemote.replace(/\./g, '\\.')} \\d+$`, 'm'));
        } else {
          assert.equal(await udpRules(gw), '', 'udp off: no UDP rule left');
          assert.deepEqual(flow, ['timeout'], 'udp off: not captured (the gateway has no route to remote)');
        }
        await page.screenshot({ path: join(SHOTS, `${tag}-settings-udp-${udpOn ? 'on' : 'off'}.png`), fullPage: true });

        // ── Export: redacted by default; with secrets after the warning.
        const [plain] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
        const plainText = readFileSync((await plain.path())!, 'utf8');
        assert.ok(!plainText.includes(SS_USERINFO) && !plainText.includes('scrypt$'), 'export redacts secrets');
        assert.match(plainText, /aes-256-gcm:\*\*\*@/);
        assert.match(plainText, /^# gateway for the Nodes page test\n/);
        await page.check('input[name="includeSecrets"]');
        await page.waitForSelector('#secrets-warning');
        const [full] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
        assert.equal(readFileSync((await full.path())!, 'utf8'), readFileSync(config, 'utf8'));

        // ── Import: bad YAML refused next to the field (nothing changed); then the redacted
        // export plus one node: previewed, then saved and applied.
        const before = readFileSync(config, 'utf8');
        await page.setInputFiles('input[name="yaml"]', {
          name: 'bad.yaml',
          mimeType: 'application/yaml',
          buffer: Buffer.from('nodes: [unclosed\n'),
        });
        await page.waitForSelector('.field-error[data-for="yaml"]:not([hidden])');
        assert.equal(readFileSync(config, 'utf8'), before);
        const extra = `imp-${i}`;
        const edited = plainText.replace('\nnodes:\n', `\nnodes:\n  ${extra}: socks5://${ip.node}:1080\n`);
        await page.setInputFiles('input[name="yaml"]', {
          name: 'edited.yaml',
          mimeType: 'application/yaml',
          buffer: Buffer.from(edited),
        });
        await page.waitForSelector('.import-preview li[data-diff="nodes-added"]');
        assert.match(await page.locator('.import-preview li[data-diff="nodes-added"]').innerText(), new RegExp(extra));
        assert.equal(readFileSync(config, 'utf8'), before, 'a preview saves nothing');
        await page.screenshot({ path: join(SHOTS, `${tag}-import-preview.png`), fullPage: true });
        await page.click('#import-apply');
        await page.waitForSelector('.import-preview', { state: 'detached' });
        const after = readFileSync(config, 'utf8');
        assert.match(after, new RegExp(`\\n {2}${extra}: socks5://`));
        assert.ok(after.includes(SS_USERINFO), 'the redacted secret came back from the stored file');
        assert.ok((await pageApi<State>(page, '/api/state')).nodes.some((n) => n.name === extra));
        await assertFits(page, `${tag} settings`);
        await page.screenshot({ path: join(SHOTS, `${tag}-settings.png`), fullPage: true });
        assert.deepEqual(errors, []);
        await context.close();
      }
      assert.ok(
        (await web.waitForOutput(new RegExp(`^${ip.nodeSideOfRemote.replace(/\./g, '\\.')}$`, 'm'))) !== undefined,
      );
    } finally {
      await browser?.close();
      await proxy.stop();
    }
  });
});
