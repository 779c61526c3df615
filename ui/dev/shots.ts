// Dev-only: screenshots of every page against the mock (npx tsx ui/dev/mock.ts first).
//   npx tsx ui/dev/shots.ts [BASE_URL] [OUT_DIR]
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.argv[2] ?? 'http://127.0.0.1:8788/';
const out = process.argv[3] ?? 'test/.artifacts/console-mock';
mkdirSync(out, { recursive: true });
const udd = mkdtempSync(join(tmpdir(), 'tpx-chromium-'));
const ctx = await chromium.launchPersistentContext(udd, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  for (const [tag, vp] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }], ['phone360', { width: 360, height: 740 }]] as const) {
    const page = await ctx.newPage();
    await page.setViewportSize(vp);
    page.on('console', (m) => console.log(`[${tag} console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`[${tag} pageerror] ${e.message}`));
    await page.goto(base);
    await page.fill('[name=password]', 'wrong');
    await page.click('button[type=submit]');
    await page.waitForSelector('text=Wrong password');
    await page.screenshot({ path: `${out}/login-${tag}.png`, fullPage: true });
    await page.fill('[name=password]', 'secret');
    await page.click('button[type=submit]');
    await page.waitForSelector('nav');
    for (const p of ['settings', 'nodes', 'rules', 'dns', 'live', 'check']) {
      await page.goto(base + '#/' + p);
      await page.waitForTimeout(p === 'live' ? 3500 : 400);
      if (p === 'check') { await page.click('text=Run check'); await page.waitForSelector('table.check'); }
      if (p === 'rules') {
        await page.fill('[name="rules[2].cidr"]', '192.168.0.0/99');
        await page.click('text=Save rules');
        await page.waitForSelector('.field-error[data-for="rules[2].cidr"]:not([hidden])');
      }
      if (p === 'nodes') { await page.click('[aria-label="Test latency of hk1"]'); await page.waitForTimeout(300); }
      await page.screenshot({ path: `${out}/${p}-${tag}.png`, fullPage: true });
    }
    await page.click('text=Log out');
    await page.waitForSelector('[name=password]');
    await page.close();
  }
} finally {
  await ctx.close();
  rmSync(udd, { recursive: true, force: true });
}
