import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { parseNodeUri, redactUri } from '../../src/outbound/uri.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const b64url = (s: string) => Buffer.from(s).toString('base64url');

test('good node URIs parse into NodeSpecs', () => {
  const cases: Array<[string, object]> = [
    ['socks5://127.0.0.1:1080', { kind: 'socks5', name: 'socks5-127.0.0.1:1080', host: '127.0.0.1', port: 1080 }],
    [
      'SOCKS5H://proxy.example:1080',
      { kind: 'socks5', name: 'socks5-proxy.example:1080', host: 'proxy.example', port: 1080 },
    ],
    [
      'socks5://user:p%40ss%3Aw0rd@[::1]:1080/',
      { kind: 'socks5', name: 'socks5-[::1]:1080', host: '::1', port: 1080, username: 'user', password: 'p@ss:w0rd' },
    ],
    [
      'socks5://us%20er@h:1',
      { kind: 'socks5', name: 'socks5-h:1', host: 'h', port: 1, username: 'us er', password: '' },
    ],
    [
      'socks5://a:b:c@h:1#office',
      { kind: 'socks5', name: 'office', host: 'h', port: 1, username: 'a', password: 'b:c' },
    ],
    ['http://proxy:3128', { kind: 'http', name: 'http-proxy:3128', host: 'proxy', port: 3128 }],
    [
      'http://u:p@[fd00::2]:8080#my%20proxy',
      { kind: 'http', name: 'my proxy', host: 'fd00::2', port: 8080, username: 'u', password: 'p' },
    ],
    // pass@word: an unencoded '@' in the password still works (the last '@' separates)
    [
      'http://u:pass@word@10.0.0.1:3128',
      { kind: 'http', name: 'http-10.0.0.1:3128', host: '10.0.0.1', port: 3128, username: 'u', password: 'pass@word' },
    ],
    // SIP002, standard base64 with padding
    [
      `ss://${b64('aes-256-gcm:secret')}@1.2.3.4:8388#Tokyo%201`,
      { kind: 'shadowsocks', name: 'Tokyo 1', host: '1.2.3.4', port: 8388, method: 'aes-256-gcm', password: 'secret' },
    ],
    // SIP002, URL-safe base64 without padding, trailing slash, empty query
    [
      `ss://${b64url('chacha20-ietf-poly1305:p?>?>?')}@ss.example:443/?`,
      {
        kind: 'shadowsocks',
        name: 'shadowsocks-ss.example:443',
        host: 'ss.example',
        port: 443,
        method: 'chacha20-ietf-poly1305',
        password: 'p?>?>?',
      },
    ],
    // plain userinfo (AEAD-2022 style), percent-encoded password
    [
      'ss://aes-128-gcm:pa%2Fss%3Aw%40rd@[2001:db8::1]:8388',
      {
        kind: 'shadowsocks',
        name: 'shadowsocks-[2001:db8::1]:8388',
        host: '2001:db8::1',
        port: 8388,
        method: 'aes-128-gcm',
        password: 'pa/ss:w@rd',
      },
    ],
    // legacy: whole authority in base64, password with ':' and '@'
    [
      `ss://${b64('AES-256-GCM:a:b@c@example.org:8388')}#legacy`,
      {
        kind: 'shadowsocks',
        name: 'legacy',
        host: 'example.org',
        port: 8388,
        method: 'aes-256-gcm',
        password: 'a:b@c',
      },
    ],
    [
      `ss://${b64url('aes-128-gcm:pw@[::1]:9')}`,
      { kind: 'shadowsocks', name: 'shadowsocks-[::1]:9', host: '::1', port: 9, method: 'aes-128-gcm', password: 'pw' },
    ],
  ];
  for (const [uri, want] of cases) assert.deepEqual(parseNodeUri(uri), want, uri);
});

test('SIP002 plugin= parses into the SIP003 plugin and its options (only known plugins)', () => {
  const v2 = parseNodeUri(
    `ss://${b64('aes-128-gcm:pw')}@h:443/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Btls%3Bhost%3Dx.example#n`,
  );
  assert.deepEqual(v2.kind === 'shadowsocks' && v2.plugin, {
    name: 'v2ray-plugin',
    opts: 'mode=websocket;tls;host=x.example',
  });
  // unencoded ';' and '=' as many links write them; simple-obfs is obfs-local's other name
  const obfs = parseNodeUri(
    `ss://${b64('aes-128-gcm:pw')}@h:80?plugin=simple-obfs;obfs=http;obfs-host=www.example.com`,
  );
  assert.deepEqual(obfs.kind === 'shadowsocks' && obfs.plugin, {
    name: 'obfs-local',
    opts: 'obfs=http;obfs-host=www.example.com',
  });
  const legacy = parseNodeUri(`ss://${b64('aes-128-gcm:pw@h:80')}?plugin=obfs-local`);
  assert.deepEqual(legacy.kind === 'shadowsocks' && legacy.plugin, { name: 'obfs-local', opts: '' });
  const none = parseNodeUri(`ss://${b64('aes-128-gcm:pw')}@h:80/?plugin=`);
  assert.equal(none.kind === 'shadowsocks' && none.plugin, undefined);
});

test('the name argument overrides the #tag', () => {
  assert.equal(parseNodeUri('socks5://h:1#tag', 'chosen').name, 'chosen');
  assert.equal(parseNodeUri('socks5://h:1#').name, 'socks5-h:1', 'an empty tag is no name');
  assert.equal(parseNodeUri(`ss://${b64('aes-128-gcm:x@h:1')}#tag`, 'chosen').name, 'chosen');
});

test('bad node URIs are UsageErrors that name the problem and never the password', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty URI/],
    ['127.0.0.1:1080', /not a URI/],
    ['ftp://h:1', /unsupported scheme 'ftp'/],
    ['https://h:443', /https:\/\/ proxies .* not supported/],
    ['socks5://h', /missing port/],
    ['socks5://h:', /missing port/],
    ['socks5://h:0', /out of range/],
    ['socks5://h:65536', /out of range/],
    ['socks5://h:12a', /not a number/],
    ['socks5://:1080', /missing host/],
    ['socks5://::1:1080', /IPv6 addresses must be written in brackets/],
    ['socks5://[::1:1080', /without closing/],
    ['socks5://[1.2.3.4]:1080', /not an IPv6 address/],
    ['socks5://[::1]x:1080', /unexpected/],
    ['socks5://bad_host!:1080', /not a valid host name/],
    ['socks5://h:1/path', /no path/],
    ['socks5://h:1?x=1', /no query/],
    ['socks5://:topsecret@h:1', /empty user name/],
    [`socks5://${'u'.repeat(256)}:topsecret@h:1`, /user name longer than 255/],
    [`socks5://u:${'topsecret'.repeat(30)}@h:1`, /password longer than 255/],
    ['socks5://u:top%zzsecret@h:1', /bad percent-encoding in the password/],
    ['http://a%3Ab:topsecret@h:1', /cannot contain ':'/],
    ['socks5://u:topsecret@h:1 x', /spaces/],
    ['ss://h:1', /expected ss:\/\/BASE64/],
    [`ss://${b64('aes-256-gcm:topsecret')}`, /does not decode to method:password@host:port/],
    [`ss://${b64('topsecret')}@h:1`, /credentials must be method:password/],
    ['ss://!!!@h:1', /neither method:password nor base64/],
    [`ss://${b64('aes-256-cfb:topsecret')}@h:1`, /stream cipher/],
    [`ss://${b64('rc4-md5:topsecret')}@h:1`, /stream cipher/],
    ['ss://2022-blake3-aes-128-gcm:topsecret@h:1', /SIP022\) is not supported/],
    ['ss://chacha20-poly1305:topsecret@h:1', /did you mean chacha20-ietf-poly1305/],
    ['ss://foo:topsecret@h:1', /unknown method 'foo'/],
    ['ss://aes-128-gcm:@h:1', /empty password/],
    [
      `ss://${b64('aes-128-gcm:topsecret')}@h:1/?plugin=kcptun%3Bkey%3Dx`,
      /SIP003 plugin 'kcptun' is not supported; supported: v2ray-plugin, obfs-local/,
    ],
    [
      `ss://${b64('aes-128-gcm:topsecret')}@h:1/?plugin=%2Fbin%2Fsh%3B-c%3Did`,
      /SIP003 plugin '\/bin\/sh' is not supported/,
    ],
    [`ss://${b64('aes-128-gcm:topsecret')}@h:1/?plugin=obfs-local%3Bobfs%3Dhttp%0A`, /control characters/],
    [`ss://${b64('aes-128-gcm:topsecret')}@h:1/?foo=bar`, /unknown query parameter 'foo'/],
  ];
  for (const [uri, want] of cases) {
    assert.throws(
      () => parseNodeUri(uri),
      (e: unknown) => {
        assert.ok(e instanceof UsageError, `${uri}: not a UsageError`);
        assert.match(e.message, want, uri);
        assert.doesNotMatch(e.message, /topsecret/, `${uri}: message leaks the password: ${e.message}`);
        assert.doesNotMatch(
          e.message,
          new RegExp(b64('topsecret').slice(0, 8)),
          `${uri}: message leaks base64 secrets`,
        );
        return true;
      },
    );
  }
});

test('redactUri hides passwords in every form and never throws', () => {
  assert.equal(redactUri('socks5://user:topsecret@h:1080'), 'socks5://user:***@h:1080');
  assert.equal(redactUri('http://h:3128'), 'http://h:3128');
  assert.equal(redactUri('http://u@h:3128'), 'http://u@h:3128');
  assert.equal(redactUri(`ss://${b64('aes-256-gcm:topsecret')}@h:8388#tag`), 'ss://aes-256-gcm:***@h:8388#tag');
  assert.equal(redactUri('ss://aes-128-gcm:top%2Fsecret@h:8388'), 'ss://aes-128-gcm:***@h:8388');
  assert.equal(redactUri(`ss://${b64('aes-256-gcm:topsecret@h:8388')}#old`), 'ss://aes-256-gcm:***@h:8388#old');
  assert.equal(redactUri('ss://garbage-topsecret#x'), 'ss://***#x');
  for (const junk of ['', 'topsecret', 'x://', '://@', 'u:topsecret@h', '\u0000\u0001', 'ss://@', 'ss://%%%@h:1']) {
    const r = redactUri(junk);
    assert.equal(typeof r, 'string');
    assert.doesNotMatch(r, /topsecret/, junk);
  }
  assert.ok(redactUri(`socks5://u:p@${'h'.repeat(1000)}:1`).length <= 201);
});
