// Dev-only: screenshots of every page against the mock (npx tsx ui/dev/mock.ts first), in
// English and Chinese.
//   npx tsx ui/dev/shots.ts [BASE_URL] [OUT_DIR]
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const base = process.argv[2] ?? 'http://127.0.0.1:8788/';
const out = process.argv[3] ?? 'test/.artifacts/console-mock';
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  for (const locale of ['en-US', 'zh-CN']) {
    const wrong = locale === 'zh-CN' ? '密码错误' : 'Wrong password';
    for (const [tag, vp] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]] as const) {
      const ctx = await browser.newContext({ locale, viewport: vp, colorScheme: tag === 'phone' ? 'dark' : 'light' });
      const page = await ctx.newPage();
      const name = (p: string) => `${out}/${p}-${tag}-${locale}.png`;
      page.on('console', (m) => console.log(`[${tag} console.${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => console.log(`[${tag} pageerror] ${e.message}`));
      await page.goto(base);
      await page.fill('[name=password]', 'wrong');
      await page.click('button[type=submit]');
      await page.locator(`text=${wrong}`).waitFor();
      await page.screenshot({ path: name('login'), fullPage: true });
      await page.fill('[name=password]', 'secret');
      await page.click('button[type=submit]');
      await page.waitForSelector('nav');
      for (const p of ['settings', 'nodes', 'rules', 'dns', 'live', 'check']) {
        await page.goto(base + '#/' + p);
        await page.waitForSelector(`nav a[href="#/${p}"][aria-current="page"]`);
        if (p === 'live') await page.waitForSelector('.live-dot.open');
        if (p === 'check') { await page.click('form button[type=submit]'); await page.waitForSelector('table.check'); await page.click('table.check details summary'); }
        if (p === 'rules') {
          await page.fill('[name="rules[2].cidr"]', '192.168.0.0/99');
          await page.click('form button[type=submit]');
          await page.waitForSelector('.field-error[data-for="rules[2].cidr"]:not([hidden])');
        }
        await page.screenshot({ path: name(p), fullPage: true });
      }
      await ctx.close();
    }
  }
} finally {
  await browser.close();
}
