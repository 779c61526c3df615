// Mapping syntax (docker run -p), tags, compaction and the --list view. Pure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { formatListing } from '../../src/publish/list.js';
import {
  canonicalIp,
  compact,
  formatMappings,
  listenAddresses,
  mappingKey,
  mappingTag,
  MAX_MAPPINGS,
  parseMapping,
  parseMappings,
  parseTag,
  type PortMapping,
} from '../../src/publish/mapping.js';

const m = (x: Partial<PortMapping> & { hostPort: number; targetIp: string; targetPort: number }): PortMapping => ({
  proto: 'tcp',
  ...x,
});

test('HOST_PORT:TARGET_IP:TARGET_PORT, tcp by default, no host IP means every address', () => {
  assert.deepEqual(parseMapping('8080:10.0.0.2:80'), [m({ hostPort: 8080, targetIp: '10.0.0.2', targetPort: 80 })]);
  assert.deepEqual(listenAddresses(parseMapping('8080:10.0.0.2:80')[0]!), ['0.0.0.0', '::']);
  assert.deepEqual(parseMapping('  53:10.0.0.2:53/udp '), [
    m({ proto: 'udp', hostPort: 53, targetIp: '10.0.0.2', targetPort: 53 }),
  ]);
  assert.deepEqual(parseMapping('53:10.0.0.2:53/UDP')[0]!.proto, 'udp');
  assert.deepEqual(parseMapping('80:10.0.0.2:80/tcp')[0]!.proto, 'tcp');
});

test('HOST_IP narrows the listen address; 0.0.0.0 and [::] are one family', () => {
  assert.deepEqual(parseMapping('127.0.0.1:8080:10.0.0.2:80'), [
    m({ hostIp: '127.0.0.1', hostPort: 8080, targetIp: '10.0.0.2', targetPort: 80 }),
  ]);
  assert.deepEqual(listenAddresses(parseMapping('0.0.0.0:8080:10.0.0.2:80')[0]!), ['0.0.0.0']);
  assert.deepEqual(listenAddresses(parseMapping('[::]:8080:10.0.0.2:80')[0]!), ['::']);
});

test('IPv6 in brackets, canonicalised', () => {
  assert.deepEqual(parseMapping('[::1]:8080:[fd00::2]:80'), [
    m({ hostIp: '::1', hostPort: 8080, targetIp: 'fd00::2', targetPort: 80 }),
  ]);
  assert.equal(parseMapping('8080:[FD00:0:0::02]:80')[0]!.targetIp, 'fd00::2');
  assert.equal(parseMapping('[fd00:0:0:0:0:0:0:1]:1:[fd00::2]:2/udp')[0]!.hostIp, 'fd00::1');
  assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.equal(canonicalIp('10.1.2.3'), '10.1.2.3');
  assert.equal(canonicalIp('10.1.2'), undefined);
});

test('equal-length ranges expand one to one', () => {
  const r = parseMapping('8000-8002:10.0.0.2:80-82/udp');
  assert.deepEqual(
    r.map((x) => `${x.hostPort}->${x.targetPort}`),
    ['8000->80', '8001->81', '8002->82'],
  );
  assert.ok(r.every((x) => x.proto === 'udp' && x.targetIp === '10.0.0.2'));
  assert.equal(parseMapping('1-65535:10.0.0.2:1-65535').length, 65535);
});

function usage(text: string, re: RegExp): void {
  assert.throws(
    () => parseMapping(text),
    (e: unknown) => {
      assert.ok(e instanceof UsageError, `not a UsageError: ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(
        e.message.includes(`'${text.trim()}'`) || text.trim() === '',
        `message quotes the mapping: ${e.message}`,
      );
      assert.match(e.message, /syntax: \[HOST_IP:\]HOST_PORT:TARGET_IP:TARGET_PORT/);
      return true;
    },
  );
}

test('clear usage errors', () => {
  usage('', /empty mapping/);
  usage('8080', /expected HOST_PORT:TARGET_IP:TARGET_PORT/);
  usage('8080:80', /TARGET_IP is missing/);
  usage('8080:fd00::2:80', /put IPv6 addresses in brackets/);
  usage('::1:8080:10.0.0.2:80', /put IPv6 addresses in brackets/);
  usage('[fd00::2:8080:10.0.0.2:80', /'\[' without '\]'/);
  usage('[10.0.0.1]:8080:10.0.0.2:80', /brackets are for IPv6 addresses only/);
  usage('[fe80::1%eth0]:8080:10.0.0.2:80', /zone ids/);
  usage('8080:10.0.0.300:80', /TARGET_IP '10\.0\.0\.300' is not an IP address/);
  usage('localhost:8080:10.0.0.2:80', /HOST_IP 'localhost' is not an IP address/);
  usage('8080:10.0.0.2:80/sctp', /protocol 'sctp' is not supported: use \/tcp or \/udp/);
  usage('8080:10.0.0.2:80/', /protocol '' is not supported/);
  usage('0:10.0.0.2:80', /HOST_PORT 0 is out of range/);
  usage('8080:10.0.0.2:65536', /TARGET_PORT 65536 is out of range/);
  usage('8080:10.0.0.2:http', /TARGET_PORT 'http' is not a port/);
  usage('8090-8080:10.0.0.2:80-90', /HOST_PORT range '8090-8080' ends before it starts/);
  usage('8000-8010:10.0.0.2:80-81', /host ports 8000-8010 \(11\) and target ports 80-81 \(2\) differ in length/);
  usage('8000-8010:10.0.0.2:80', /differ in length/);
  usage('127.0.0.1::10.0.0.2:80', /HOST_PORT is missing \(random host ports are not supported\)/);
  usage('8080:0.0.0.0:80', /not an address packets can be sent to/);
  usage('8080:[::]:80', /not an address packets can be sent to/);
  usage('8080:10.0.0.2:', /TARGET_PORT is missing/);
});

test('a host port published twice is refused; different families or protocols are fine', () => {
  assert.throws(
    () => parseMappings(['8080:10.0.0.2:80', '8080:10.0.0.3:80']),
    /host port 8080\/tcp on 0\.0\.0\.0 is published twice/,
  );
  assert.throws(() => parseMappings(['8000-8010:10.0.0.2:80-90', '8010:10.0.0.3:80']), /8010\/tcp .* published twice/);
  assert.throws(
    () => parseMappings(['8080:10.0.0.2:80', '[::]:8080:[fd00::2]:80']),
    /on \[::\] is published twice.*give each a HOST_IP/,
  );
  assert.throws(() => parseMappings(['0.0.0.0:8080:10.0.0.2:80', '127.0.0.1:8080:10.0.0.3:80']), /published twice/);
  assert.equal(parseMappings(['0.0.0.0:8080:10.0.0.2:80', '[::]:8080:[fd00::2]:80']).length, 2);
  assert.equal(parseMappings(['127.0.0.1:8080:10.0.0.2:80', '127.0.0.2:8080:10.0.0.3:80']).length, 2);
  assert.equal(parseMappings(['8080:10.0.0.2:80', '8080:10.0.0.2:80/udp']).length, 2);
  assert.throws(() => parseMappings(['8080:10.0.0.2:80', '[::1]:8080:[fd00::2]:80']), /on \[::1\] is published twice/);
  assert.throws(
    () => parseMappings([`1-${MAX_MAPPINGS + 1}:10.0.0.2:1-${MAX_MAPPINGS + 1}`]),
    /at most 4096 per process/,
  );
});

test("tags: key + owner, parsed back, within nft's 128-byte comment limit", () => {
  const all = parseMappings([
    '8080:10.0.0.2:80',
    '127.0.0.1:5353:10.0.0.2:53/udp',
    '[::1]:8081:[fd00::2]:80',
    '[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535:[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535/udp',
  ]);
  for (const x of all) {
    const tag = mappingTag(x, 4194304);
    assert.ok(Buffer.byteLength(tag) <= 128, `${tag} is ${tag.length} bytes`);
    const back = parseTag(tag);
    assert.deepEqual(back, { mapping: x, key: mappingKey(x), owner: 4194304 });
  }
  assert.equal(mappingTag(all[0]!, 7), 'tpx-publish tcp *:8080 10.0.0.2:80 pid=7');
  assert.equal(mappingKey(all[2]!), 'tcp [::1]:8081 [fd00::2]:80');
  assert.equal(parseTag('tranproxy something else'), undefined);
  assert.equal(parseTag(undefined), undefined);
  assert.equal(parseTag('tpx-publish tcp *:8080 10.0.0.2:80'), undefined, 'no owner');
});

test('compaction shows ranges again, in order', () => {
  const all = parseMappings([
    '8000-8199:10.0.0.2:9000-9199',
    '53:10.0.0.2:53/udp',
    '54:10.0.0.2:54/udp',
    '[::1]:1:[fd00::2]:1',
  ]);
  assert.equal(compact(all).length, 3);
  assert.equal(
    formatMappings(all),
    'tcp *:8000-8199->10.0.0.2:9000-9199, udp *:53-54->10.0.0.2:53-54, tcp [::1]:1->[fd00::2]:1',
  );
  // not contiguous on the target side: two groups
  assert.equal(
    formatMappings(parseMappings(['80:10.0.0.2:80', '81:10.0.0.2:90'])),
    'tcp *:80->10.0.0.2:80, tcp *:81->10.0.0.2:90',
  );
});

test('--list view groups by owner and marks leftovers', () => {
  const listed = [
    ...parseMappings(['8000-8002:10.0.0.2:80-82']).map((mapping) => ({ mapping, key: mappingKey(mapping), owner: 10 })),
    ...parseMappings(['53:10.0.0.2:53/udp']).map((mapping) => ({ mapping, key: mappingKey(mapping), owner: 20 })),
  ];
  assert.equal(
    formatListing(listed, (pid) => pid === 10),
    'tcp *:8000-8002->10.0.0.2:80-82  pid 10 (running)\n' +
      'udp *:53->10.0.0.2:53            pid 20 (not running: leftover, remove with tranproxy publish --remove-all)\n',
  );
  assert.equal(
    formatListing([], () => true),
    'no published ports\n',
  );
});
