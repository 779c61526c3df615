// Issue 17 item 7: rule sets from a URL. Formats, the config's rule-set references, the copy
// kept on disk (fetched with a User-Agent, size-capped, replaced only by a good answer) and
// the refresh on an interval, against a real HTTP server on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfigText, ruleSetPath } from '../../src/config/file.js';
import type { RuleSetConfig } from '../../src/config/schema.js';
import { compileRules, packedBytes, packRuleLists, parseRuleSet, reviveRuleLists } from '../../src/route/index.js';
import { fetchMissingRuleSets, refreshRuleSet, startRuleSetRefresh } from '../../src/ruleset/updater.js';

const flow = (domain: string | undefined, ip = '203.0.113.9') => ({
  dst: { ip, port: 443, family: 4 as const, ...(domain ? { domain } : {}) },
  src: '10.0.0.2',
  network: 'tcp' as const,
});

function tmp(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-rulesets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const logLines = () => {
  const lines: string[] = [];
  const put = (level: string) => (msg: string, f?: object) =>
    void lines.push(`${level} ${msg} ${JSON.stringify(f ?? {})}`);
  return { lines, log: { info: put('info'), warn: put('warn'), error: put('error') } };
};

/** A loopback HTTP server whose answer the test sets; records each request's User-Agent. */
async function listServer(t: { after(fn: () => void): void }) {
  const state = { body: '', status: 200, agents: [] as string[] };
  const server: Server = createServer((req, res) => {
    state.agents.push(String(req.headers['user-agent']));
    res.writeHead(state.status, { 'content-type': 'text/plain' });
    res.end(state.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/list`;
  return { state, url, server };
}

test('formats: domain list, CIDR lines, Clash payload (domain, ipcidr, classical) and its text form', () => {
  const d = parseRuleSet('example.com\nfull:www.a.test\nkeyword:track\n', 'domain', 's');
  assert.deepEqual(d.domains?.entries(), { full: ['www.a.test'], suffix: ['example.com'], keyword: ['track'] });
  assert.deepEqual(parseRuleSet('# c\n10.0.0.0/8\n\n2001:db8::/32 # x\n192.0.2.1\n', 'cidr', 's').cidrs, [
    '10.0.0.0/8',
    '2001:db8::/32',
    '192.0.2.1',
  ]);
  const clash = parseRuleSet("payload:\n  - '+.google.com'\n  - '.gstatic.com'\n  - 'exact.test'\n", 'clash', 's');
  assert.deepEqual(clash.domains?.entries(), {
    full: ['exact.test'],
    suffix: ['google.com', 'gstatic.com'],
    keyword: [],
  });
  const classical = parseRuleSet(
    'payload:\n  - DOMAIN-SUFFIX,ads.test\n  - DOMAIN,x.test\n  - DOMAIN-KEYWORD,doubleclick\n  - PROCESS-NAME,curl\n  - PROCESS-NAME,wget\n',
    'clash',
    's',
  );
  assert.deepEqual(classical.domains?.entries(), { full: ['x.test'], suffix: ['ads.test'], keyword: ['doubleclick'] });
  assert.deepEqual(classical.skipped, { 'PROCESS-NAME': 2 });
  const ip = parseRuleSet('payload:\n  - 10.1.0.0/16\n  - IP-CIDR6,2001:db8::/32,no-resolve\n', 'clash', 's');
  assert.deepEqual(ip.cidrs, ['10.1.0.0/16', '2001:db8::/32']);
  assert.equal(ip.domains, undefined);
  assert.deepEqual(parseRuleSet('+.text.test\n# c\n', 'clash', 's').domains?.entries().suffix, ['text.test']);
  assert.throws(() => parseRuleSet('10.0.0.0/8\nroot:x:0:0\n', 'cidr', 'rule set s'), /rule set s:2: not a CIDR/);
});

function configWith(dir: string, sets: string, rules: string): string {
  const path = join(dir, 'gw.yaml');
  writeFileSync(path, `rule-sets:\n${sets}rules:\n${rules}default: direct\n`, { mode: 0o600 });
  return path;
}

function copy(dir: string, name: string, text: string): void {
  mkdirSync(join(dir, 'rule-sets'), { recursive: true });
  writeFileSync(ruleSetPath(dir, name), text, { mode: 0o644 });
}

test('config: a rule names rule sets; their copies on disk are its entries; one not fetched yet matches nothing', (t) => {
  const dir = tmp(t);
  const text = readFileSync(
    configWith(
      dir,
      '  ads: { url: "https://lists.test/ads.txt", interval: 1d }\n  nets: { url: "http://lists.test/n", format: cidr }\n  later: { url: "http://lists.test/l" }\n',
      '  - rule-set: ads\n    outbound: reject\n  - rule-set: nets\n    outbound: reject\n  - rule-set: later\n    outbound: reject\n',
    ),
    'utf8',
  );
  copy(dir, 'ads', 'doubleclick.net\nfull:ads.example.com\n');
  copy(dir, 'nets', '198.51.100.0/24\n');
  const cfg = parseConfigText(text, join(dir, 'gw.yaml'));
  assert.equal(cfg.ruleSets.ads?.intervalMs, 86_400_000);
  assert.equal(cfg.ruleSets.nets?.format, 'cidr');
  assert.equal(cfg.ruleSets.later?.format, 'domain');
  const r = compileRules(cfg.routeRules, cfg.default, []);
  assert.deepEqual(r.route(flow('x.doubleclick.net')), { action: 'reject', rule: 0 });
  assert.deepEqual(r.route(flow('ads.example.com')), { action: 'reject', rule: 0 });
  assert.deepEqual(r.route(flow(undefined, '198.51.100.7')), { action: 'reject', rule: 1 });
  assert.deepEqual(r.route(flow('other.test')), { action: 'direct', rule: 'default' });
  // The data plane gets the rules as JSON, their lists packed into bytes.
  const packed = packRuleLists(cfg.routeRules);
  const again = compileRules(
    reviveRuleLists(JSON.parse(JSON.stringify(packed.rules)), packedBytes(packed)),
    cfg.default,
    [],
  );
  assert.deepEqual(again.route(flow('x.doubleclick.net')), { action: 'reject', rule: 0 });
});

test('config: an unknown rule set, an IP set in a rule with domain matchers, a bad copy: each named at its line', (t) => {
  const dir = tmp(t);
  const issues = (sets: string, rules: string): string => {
    try {
      parseConfigText(readFileSync(configWith(dir, sets, rules), 'utf8'), join(dir, 'gw.yaml'));
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.message;
    }
    assert.fail('expected a ConfigError');
  };
  assert.match(
    issues('  ads: { url: "http://l.test/a" }\n', '  - rule-set: adz\n    outbound: reject\n'),
    /gw\.yaml:4:\d+: rules\[0\]\.rule-set: unknown rule set 'adz' \(defined: ads\); did you mean 'ads'\?/,
  );
  copy(dir, 'nets', '10.0.0.0/8\n');
  assert.match(
    issues(
      '  nets: { url: "http://l.test/n", format: cidr }\n',
      '  - rule-set: nets\n    domain-suffix: a.test\n    outbound: reject\n',
    ),
    /rules\[0\]\.rule-set: these rule sets hold IP entries/,
  );
  copy(dir, 'bad', 'full:ok.test\nfull:not a name\n');
  assert.match(
    issues('  bad: { url: "http://l.test/b" }\n', '  - rule-set: bad\n    outbound: reject\n'),
    /rule-sets\.bad: rule set bad:2: not a domain name/,
  );
  assert.match(
    issues('  x: { url: "ftp://l.test/b" }\n', ''),
    /rule-sets\.x\.url: 'ftp:\/\/l\.test\/b' is not an http/,
  );
});

test('refresh: fetched with the User-Agent and kept on disk; a bad, empty or failed answer keeps the last good copy', async (t) => {
  const dir = tmp(t);
  const { state, url } = await listServer(t);
  const { lines, log } = logLines();
  const def: RuleSetConfig = { url, intervalMs: 1000, format: 'domain', userAgent: 'tpx-test/1' };
  const src = { baseDir: dir, log };
  const path = ruleSetPath(dir, 'ads');

  state.body = 'ads.test\n';
  assert.equal(await fetchMissingRuleSets({ ads: def }, src), true);
  assert.equal(readFileSync(path, 'utf8'), 'ads.test\n');
  assert.equal(state.agents[0], 'tpx-test/1');
  assert.equal(statSync(path).mode & 0o777, 0o644);
  // A copy on disk is used as is at start: nothing fetched.
  assert.equal(await fetchMissingRuleSets({ ads: def }, src), false);
  assert.equal(state.agents.length, 1);
  assert.ok(lines.some((l) => l.includes('rule set ads: using the copy on disk')));

  assert.equal(await refreshRuleSet('ads', def, src), false, 'the same list: no change');
  state.body = 'ads.test\nfull:not a name\n';
  await assert.rejects(refreshRuleSet('ads', def, src), /rule set ads:2: not a domain name/);
  state.body = '# nothing\n';
  await assert.rejects(refreshRuleSet('ads', def, src), /no entries/);
  state.status = 503;
  await assert.rejects(refreshRuleSet('ads', def, src), /HTTP 503/);
  assert.equal(readFileSync(path, 'utf8'), 'ads.test\n', 'the last good copy stays');
  state.status = 200;
  state.body = 'ads.test\nmore.test\n';
  assert.equal(await refreshRuleSet('ads', def, src), true);
  assert.equal(readFileSync(path, 'utf8'), 'ads.test\nmore.test\n');
  assert.deepEqual(
    readFileSync(path, 'utf8').split('\n').filter(Boolean),
    ['ads.test', 'more.test'],
    'no temporary file left behind either',
  );
  assert.equal(existsSync(`${path}.${process.pid}.tmp`), false);
});

test('refresh: an answer over the cap is cut off while streaming and refused', async (t) => {
  const dir = tmp(t);
  const { log } = logLines();
  let sent = 0;
  const server = createServer((_req, res) => {
    res.writeHead(200); // no Content-Length: the cap is met while reading
    const chunk = Buffer.alloc(1 << 20, 'a.test\n');
    const pump = () => {
      while (sent < 64 << 20 && res.write(chunk)) sent += chunk.length;
      if (sent < 64 << 20) res.once('drain', pump);
      else res.end();
    };
    res.on('close', () => res.destroy());
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const def: RuleSetConfig = { url, intervalMs: 0, format: 'domain', userAgent: 'x' };
  await assert.rejects(refreshRuleSet('big', def, { baseDir: dir, log }), /larger than 32 MiB/);
  assert.ok(sent < 48 << 20, `the server was cut off early (${sent >> 20} MiB sent)`);
  assert.equal(existsSync(ruleSetPath(dir, 'big')), false);
});

test('refresh on the interval: a changed list is applied, a failing server leaves the copy and says so', async (t) => {
  const dir = tmp(t);
  const { state, url, server } = await listServer(t);
  const { lines, log } = logLines();
  const def: RuleSetConfig = { url, intervalMs: 150, format: 'domain', userAgent: 'x' };
  copy(dir, 'ads', 'old.test\n');
  state.body = 'new.test\n';
  let applied = 0;
  const r = startRuleSetRefresh({ ads: def }, { baseDir: dir, log }, async () => void applied++);
  t.after(() => r.close());
  const until = async (ok: () => boolean, what: string) => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((res) => setTimeout(res, 50));
    assert.ok(ok(), what);
  };
  await until(() => applied === 1, 'the changed list was applied');
  assert.equal(readFileSync(ruleSetPath(dir, 'ads'), 'utf8'), 'new.test\n');
  await until(() => state.agents.length >= 3, 'refreshed again on the interval');
  assert.equal(applied, 1, 'an unchanged list is not applied again');
  server.closeAllConnections();
  await new Promise<void>((res) => server.close(() => res()));
  await until(
    () => lines.some((l) => /warn rule set ads: refresh failed, keeping the last good copy from/.test(l)),
    'the failure is logged',
  );
  assert.equal(readFileSync(ruleSetPath(dir, 'ads'), 'utf8'), 'new.test\n');
});
