import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dataPlanePrivileges, GATEWAY_DATA_PLANE_USER, type PrivilegeInputs } from '../../src/proxy/privileges.js';
import { setprivArgs } from '../../src/kernel/privdrop.js';

const base: PrivilegeInputs = {
  mode: 'redirect',
  capture: ['output'],
  proxyUser: { uid: 1337, gid: 1337 },
  preserveSource: false,
  udp: false,
  bypassMark: 0x539,
  routing: undefined,
};

test('REDIRECT: no capability, sidecar or gateway; no mark where uid exclusion or PREROUTING covers it', () => {
  assert.deepEqual(dataPlanePrivileges(base), { drop: { uid: 1337, gid: 1337, caps: [] }, mark: 0 });
  const gw = dataPlanePrivileges({ ...base, capture: ['prerouting'], proxyUser: undefined });
  assert.deepEqual(gw, { drop: { ...GATEWAY_DATA_PLANE_USER, caps: [] }, mark: 0 });
});

test('output capture without a proxy user keeps CAP_NET_ADMIN for the SO_MARK loop guard', () => {
  assert.deepEqual(dataPlanePrivileges({ ...base, proxyUser: undefined }), {
    drop: { uid: 65534, gid: 65534, caps: ['net_admin'] },
    mark: 0x539,
  });
});

test('TPROXY: preserve-source needs CAP_NET_ADMIN; UDP adds CAP_NET_BIND_SERVICE; a low DNS port too', () => {
  const tp: PrivilegeInputs = {
    ...base,
    mode: 'tproxy',
    capture: ['prerouting'],
    proxyUser: undefined,
    preserveSource: true,
  };
  assert.deepEqual(dataPlanePrivileges(tp).drop.caps, ['net_admin']);
  assert.deepEqual(dataPlanePrivileges({ ...tp, preserveSource: false }).drop.caps, []);
  assert.deepEqual(dataPlanePrivileges({ ...tp, udp: true }).drop.caps, ['net_admin', 'net_bind_service']);
  const dns = (port: number): PrivilegeInputs['routing'] =>
    ({
      nodes: {},
      rules: [],
      defaultOutbound: 'direct',
      sniffTimeoutMs: 300,
      dns: { listen: { host: undefined, port } },
    }) as unknown as PrivilegeInputs['routing'];
  assert.deepEqual(dataPlanePrivileges({ ...tp, preserveSource: false, routing: dns(53) }).drop.caps, [
    'net_bind_service',
  ]);
  assert.deepEqual(dataPlanePrivileges({ ...tp, preserveSource: false, routing: dns(5353) }).drop.caps, []);
});

test('setpriv arguments clear every set but the kept capabilities, and set no_new_privs', () => {
  assert.deepEqual(setprivArgs({ uid: 65534, gid: 65534, caps: ['net_admin'] }), [
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    '--inh-caps=-all,+net_admin',
    '--ambient-caps=-all,+net_admin',
    '--bounding-set=-all,+net_admin',
    '--no-new-privs',
    '--',
  ]);
  assert.ok(setprivArgs({ uid: 1, gid: 1, caps: [] }).includes('--bounding-set=-all'));
});
