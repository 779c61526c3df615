// The console's two catalogues (ui/src/i18n.ts) and its plain-language errors (ui/src/errors.ts):
// pure modules, tested under Node.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { catalogues, pickLang, setLang, type Key } from '../../ui/src/i18n.js';
import { explain, renumberRules } from '../../ui/src/errors.js';

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
// The same in both languages on purpose: protocol names, symbols.
const SAME = new Set<Key>(['nav.dns', 'common.none', 'nodes.usedTcp', 'nodes.usedUdp', 'dns.fakeIp', 'nodes.delay']);

test('English and Chinese catalogues: same keys, no empty values, same {placeholders}, Chinese actually translated', () => {
  const en = catalogues.en;
  const zh = catalogues.zh;
  assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
  for (const k of Object.keys(en) as Key[]) {
    assert.ok(en[k].trim(), `en ${k} is empty`);
    assert.ok(zh[k].trim(), `zh ${k} is empty`);
    assert.deepEqual(placeholders(zh[k]), placeholders(en[k]), `${k}: placeholders differ`);
    if (!SAME.has(k)) assert.notEqual(zh[k], en[k], `${k} is not translated`);
  }
  // Chinese words a side-router user expects.
  const all = Object.values(zh).join('\n');
  for (const w of ['节点', '订阅', '规则', '直连', '拒绝', '连接', '测速', '分流', '设置', '退出登录', '详情'])
    assert.ok(all.includes(w), w);
});

test('language from navigator.languages: zh* is Chinese, else English; a stored choice wins', () => {
  assert.equal(pickLang(null, ['zh-CN', 'en']), 'zh');
  assert.equal(pickLang(null, ['zh-TW']), 'zh');
  assert.equal(pickLang(null, ['fr-FR', 'zh']), 'zh');
  assert.equal(pickLang(null, ['en-US', 'zh-CN']), 'en');
  assert.equal(pickLang(null, ['de-DE']), 'en');
  assert.equal(pickLang(null, []), 'en');
  assert.equal(pickLang('en', ['zh-CN']), 'en');
  assert.equal(pickLang('zh', ['en-US']), 'zh');
  assert.equal(pickLang('xx', ['zh-CN']), 'zh');
});

// Raw errors seen from the gateway and the browser.
const RAW = [
  'connect ENETUNREACH 10.80.4.2:80 - Local (0.0.0.0:0)',
  'connect ECONNREFUSED 10.0.0.1:1080',
  'connect ETIMEDOUT 10.0.0.1:443',
  'getaddrinfo ENOTFOUND example.invalid',
  "default-udp: unknown outbound '01' (known: direct, reject, a)",
  "unknown outbound 'nope' (known: direct, reject, a)",
  "'10.0.0.0/99' is not a CIDR: use e.g. 10.0.0.0/8 or fd00::/8",
  "rules[1]: 'icmp' is not one of tcp, udp",
  "EROFS: read-only file system, open '/etc/tranproxy/.gateway.yaml.tmp'",
  'network error: Failed to fetch',
  "node 'hk' is in use by tcpNode (default), rules[0]: change those first",
  "line 2: unsupported scheme 'vmess': use ss://, socks5://, http://",
  'nothing imported: 0 imported, 1 skipped: proxy node ss://***: expected ss://BASE64(method:password)@host:port',
  'too many failed logins: try again in 42 s',
  'Host is not this console: open it by its address (or localhost)',
];

test('errors in plain words: no errno codes, config keys or rules[N] in the sentence; the raw text under details', () => {
  for (const l of ['en', 'zh'] as const) {
    setLang(l);
    for (const raw of RAW) {
      const x = explain(raw, 400);
      assert.doesNotMatch(
        x.text,
        /\bE[A-Z]{4,}\b|default-udp|rules\[\d+\]|outbound|Failed to fetch/,
        `${l}: ${raw} -> ${x.text}`,
      );
      if (l === 'zh') assert.match(x.text, /[\u4e00-\u9fff]/, `zh: ${raw} -> ${x.text}`);
      assert.equal(x.detail, renumberRules(raw));
    }
  }
  setLang('en');
  assert.equal(
    explain('connect ENETUNREACH 10.80.4.2:80 - Local (0.0.0.0:0)').text,
    'No route to 10.80.4.2:80: the network there cannot be reached.',
  );
  assert.equal(
    explain('network error: Failed to fetch', 0).text,
    'The gateway is not answering. Check that it is running; the page retries by itself.',
  );
  assert.equal(
    explain("node 'hk' is in use by tcpNode (default), rules[0]: change those first").text,
    'Node hk is still in use (TCP node, Rule 1): change those first.',
  );
  setLang('zh');
  assert.equal(
    explain("default-udp: unknown outbound '01' (known: direct)").text,
    '“01”不是已有的节点（也不是直连或拒绝）。',
  );
  assert.equal(explain('too many failed logins: try again in 42 s').text, '密码错误次数过多：请等待 42 秒后再试。');
  assert.equal(explain('something new and unknown', 500).text, '网关无法完成此操作。');
  setLang('en');
});

test('rules are numbered from 1 in messages, as the page numbers them', () => {
  assert.equal(renumberRules('rules[0]: no matcher; rules[12].cidr: bad'), 'rule 1: no matcher; rule 13.cidr: bad');
  assert.equal(renumberRules('nothing to do'), 'nothing to do');
});
