// The commands `lab up` / `lab down` run for a root-namespace lab, in order and with their
// stdin, against golden files in test/golden/runs/ (UPDATE_GOLDEN=1 rewrites them), through a
// fake runner with models of links, nft tables and sysctls: rollback in reverse order, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabUpError, labDown, labUp } from '../../src/netlab/apply.js';
import { parseLabText } from '../../src/netlab/spec.js';
import { removeState } from '../../src/netlab/state.js';
import { FakeRunner } from '../helpers/fake-runner.js';
import { fakeSystem, LinkModel } from '../helpers/fake-system.js';
import { golden } from '../helpers/golden.js';

const RUNS = { dir: 'runs' };
let seq = 0;

function lab() {
  const name = `fk${process.pid % 10000}${++seq}`;
  const text = `name: ${name}
root:
  sysctls:
    net.ipv4.ip_forward: 1
  nat:
    - {type: masquerade, source: 10.77.0.0/24, out: up0}
bridges:
  br0:
    addresses: [10.77.0.1/24]
dummies:
  up0: {host: root, addresses: [192.0.2.1/24]}
`;
  const runner = new FakeRunner();
  const links = new LinkModel();
  runner.on('ip', (c) => links.answer(c.args) ?? {});
  const sys = fakeSystem(runner);
  runner.on('nft list table', (c) => {
    const text = sys.nft.list(c.args.at(-1)!);
    return text === undefined ? { status: 1, stderr: 'Error: No such file or directory' } : { stdout: text };
  });
  return { name, model: parseLabText(text, `${name}.yaml`), runner, links, sys };
}

/** The transcript with this run's lab name (and the table's hash of it) replaced by stable text. */
function transcript(l: ReturnType<typeof lab>): string {
  return l.runner
    .transcript()
    .replaceAll(l.name, 'LAB')
    .replace(/(comment "tranproxy lab LAB )[0-9a-f]+"/g, '$1HASH"');
}

test('lab up then down (root namespace): command sequence and stdin match the golden run', () => {
  const l = lab();
  try {
    const up = labUp(l.model, { runner: l.runner });
    assert.ok(up.created.length >= 5, up.created.join('\n'));
    assert.equal(l.sys.sysctl.get('net.ipv4.ip_forward'), '1');
    assert.ok(l.links.names().length === 2 && l.sys.nft.tables.size === 1);
    const upRun = transcript(l);
    l.runner.calls.length = 0;
    const again = labUp(l.model, { runner: l.runner });
    assert.deepEqual(again.created, [], 'a second up changed something');
    l.runner.calls.length = 0;
    labDown(l.model, l.runner);
    assert.deepEqual(l.links.names(), []);
    assert.equal(l.sys.nft.tables.size, 0);
    assert.equal(l.sys.sysctl.get('net.ipv4.ip_forward'), '0', 'down did not restore the sysctl');
    golden('lab-root.up', upRun, RUNS);
    golden('lab-root.down', transcript(l), RUNS);
    l.runner.calls.length = 0;
    labDown(l.model, l.runner);
    assert.deepEqual(
      l.runner.calls.filter((c) => c.input !== undefined || c.args.includes('del')),
      [],
      'a second down wrote something',
    );
  } finally {
    removeState(l.name);
  }
});

test('lab up fails closed: a failing step undoes every change of the run, newest first', () => {
  const l = lab();
  try {
    l.runner.failFirst('nft -f -', 'Error: Could not process rule');
    assert.throws(() => labUp(l.model, { runner: l.runner }), LabUpError);
    assert.deepEqual(l.links.names(), [], 'interfaces left behind');
    assert.equal(l.sys.sysctl.get('net.ipv4.ip_forward'), '0', 'sysctl not restored');
    const dels = l.runner.calls
      .filter((c) => c.args[0] === 'link' && c.args[1] === 'del')
      .map((c) => c.args[2]?.replace(`${l.name}-`, ''));
    assert.deepEqual(dels, ['up0', 'br0'], 'rollback not in reverse order of creation');
    golden('lab-root.up-fails', transcript(l), RUNS);
  } finally {
    removeState(l.name);
  }
});
