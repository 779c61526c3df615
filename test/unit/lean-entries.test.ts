// What the long-running processes load: the modules reached by static imports (those that load
// at start) from the data-plane child and from `tranproxy run`. Lazily loaded code (import(),
// a require on first use) is left out on purpose: it costs memory only when used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Value imports and re-exports that load with the file (type-only ones and import() excluded). */
function staticImports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const specs: string[] = [];
  for (const node of sf.statements) {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const onlyTypes =
        clause?.isTypeOnly === true ||
        (clause?.name === undefined &&
          named !== undefined &&
          ts.isNamedImports(named) &&
          named.elements.length > 0 &&
          named.elements.every((e) => e.isTypeOnly));
      if (!onlyTypes) specs.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.isTypeOnly) specs.push(node.moduleSpecifier.text);
    }
  }
  return specs;
}

/** Every src file and package reached from `entry` by static imports. */
function loadedAtStart(entry: string): Set<string> {
  const reached = new Set<string>();
  const walk = (file: string): void => {
    if (reached.has(file)) return;
    reached.add(file);
    for (const spec of staticImports(file)) {
      if (!spec.startsWith('.')) {
        reached.add(spec);
        continue;
      }
      const target = relative(ROOT, resolve(dirname(join(ROOT, file)), spec.replace(/\.js$/, '.ts')));
      assert.ok(existsSync(join(ROOT, target)), `${file} imports ${spec}: not found`);
      walk(target);
    }
  };
  walk(entry);
  return reached;
}

function offenders(entry: string, forbidden: RegExp): string[] {
  return [...loadedAtStart(entry)].filter((m) => forbidden.test(m)).sort();
}

test('the data-plane child loads no console, Kubernetes, lab, CLI, YAML or schema code', () => {
  const loaded = loadedAtStart('src/proxy/child.ts');
  assert.ok(loaded.has('src/proxy/dataplane.ts'), 'the walk follows the child entry');
  assert.deepEqual(
    offenders('src/proxy/child.ts', /^src\/(console|k8s|netlab|demo|cli|publish|doctor)\/|^(yaml|zod|commander)$/),
    [],
  );
});

test('`tranproxy run` loads no console, Kubernetes, lab or other subcommand at start', () => {
  const loaded = loadedAtStart('src/cli/main.ts');
  assert.ok(!loaded.has('src/cli/run.ts'), 'main.ts loads the subcommand it runs, not all of them');
  assert.deepEqual(offenders('src/cli/main.ts', /^src\/(?!cli\/main|cli\/default-command|errors)|^commander$/), []);
  assert.ok(loadedAtStart('src/proxy/supervisor.ts').has('src/firewall/apply.ts'), 'the walk follows the supervisor');
  for (const entry of ['src/cli/run.ts', 'src/proxy/supervisor.ts'])
    assert.deepEqual(offenders(entry, /^src\/(console|k8s|netlab|demo|publish|doctor)\//), [], entry);
});

// What a sidecar's data plane must never keep resident: node protocols (only the built-in
// direct/reject outbounds), the DNS forwarder, UDP and proxy mode's inbound. They load from
// gateway-parts.ts when the configuration has nodes, DNS, UDP or proxy mode. The SOCKS5 wire
// codec and the Shadowsocks AEAD streams (pure, a few KB) are the exception: the splice
// engine's loop speaks them to a node.
const GATEWAY_ONLY =
  /^src\/(dns|udp|inbound)\/|^src\/outbound\/(?!builtin|direct|types|group|socks5-wire|shadowsocks-aead)|^src\/proxy\/(gateway-parts|groups)\.ts$/;

test('the data plane (child or one process) loads no node protocol, DNS, UDP or inbound code unless configured', () => {
  for (const entry of ['src/proxy/child.ts', 'src/proxy/one-process.ts']) {
    assert.ok(loadedAtStart(entry).has('src/proxy/plane-runtime.ts'), `the walk follows ${entry}`);
    assert.deepEqual(offenders(entry, GATEWAY_ONLY), [], entry);
  }
  // The parts it leaves out are real, and are what gateway-parts.ts brings.
  const parts = loadedAtStart('src/proxy/gateway-parts.ts');
  for (const m of ['src/dns/forwarder.ts', 'src/udp/tproxy.ts', 'src/inbound/mixed.ts', 'src/outbound/shadowsocks.ts'])
    assert.ok(parts.has(m), m);
});

test('`run --one-process` keeps no command-line, config, firewall, supervisor, metrics or JSON-log code', () => {
  // The lean entry main.ts hands over to, and what it serves with.
  for (const entry of ['src/cli/one-process.ts', 'src/proxy/one-process.ts']) {
    assert.deepEqual(
      offenders(
        entry,
        /^(commander|zod|yaml|prom-client|pino)$|^src\/(firewall|console|k8s|cli\/(?!one-process|parse-child|default-command))|^src\/config\/(settings|schema|file|run-config|routing)\.ts$|^src\/proxy\/(supervisor|child)\.ts$/,
      ),
      [],
      entry,
    );
  }
  assert.ok(loadedAtStart('src/proxy/one-process.ts').has('src/proxy/dataplane.ts'), 'the walk follows the data plane');
});

test('prom-client (and its OpenTelemetry dependency) loads only for an admin API, in every long-running process', () => {
  // A gateway's supervisor and data plane (with its gateway parts: groups, nodes, DNS) import it on demand.
  for (const entry of ['src/proxy/child.ts', 'src/proxy/gateway-parts.ts', 'src/proxy/supervisor.ts']) {
    assert.ok(
      loadedAtStart(entry).has('src/proxy/protocol.ts') || entry.includes('gateway'),
      `the walk follows ${entry}`,
    );
    assert.deepEqual(offenders(entry, /^prom-client$|^src\/observe\/metrics\.ts$/), [], entry);
  }
  assert.ok(loadedAtStart('src/proxy/gateway-parts.ts').has('src/proxy/groups.ts'), 'the walk reaches the groups');
});

test('`tranproxy run` supervises without the option parsers: commander, zod and YAML load in a short-lived child', () => {
  // lean-run.ts serves every configuration that does not need them at run time (no console, no rule sets).
  for (const entry of ['src/cli/lean-run.ts', 'src/proxy/supervisor.ts']) {
    assert.ok(loadedAtStart(entry).has('src/errors.ts'), `the walk follows ${entry}`);
    assert.deepEqual(
      offenders(
        entry,
        /^(commander|zod|yaml)$|^src\/cli\/(?!lean-run|parse-child|default-command)|^src\/config\/(settings|schema|file|run-config|routing|zod-parts)\.ts$/,
      ),
      [],
      entry,
    );
  }
});
