// deploy/systemd/tranproxy.service keeps ProtectSystem=strict yet lets the console save: the
// config file's directory (where writeFileAtomic puts its temporary file) must be writable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const UNIT = join(import.meta.dirname, '../../deploy/systemd/tranproxy.service');

/** `Key=value` lines of the [Service] section; a key may repeat. */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (section === 'Service' && kv) out.set(kv[1]!, [...(out.get(kv[1]!) ?? []), kv[2]!]);
  }
  return out;
}

/** Paths a strict unit may write: ReadWritePaths= and the /etc/<ConfigurationDirectory>. */
function writablePaths(settings: Map<string, string[]>): string[] {
  const words = (key: string) => (settings.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);
  return [
    ...words('ReadWritePaths').map((p) => p.replace(/^[-+]/, '')),
    ...words('ConfigurationDirectory').map((d) => `/etc/${d}`),
  ];
}

test('systemd unit: ProtectSystem=strict, and the --config directory is writable so console edits can be saved', () => {
  const settings = serviceSettings(readFileSync(UNIT, 'utf8'));
  assert.deepEqual(settings.get('ProtectSystem'), ['strict']);
  const exec = settings.get('ExecStart')?.[0] ?? '';
  const config = /--config[= ](\S+)/.exec(exec)?.[1];
  assert.ok(config, `ExecStart names a --config file: ${exec}`);
  const dir = dirname(config);
  const writable = writablePaths(settings);
  assert.ok(
    writable.some((p) => dir === p || dir.startsWith(`${p}/`)),
    `${dir} (the console writes ${dir}/.<name>.tmp, then renames) is in ${JSON.stringify(writable)}`,
  );
  assert.ok(!writable.some((p) => p === '/etc' || p === '/'), 'only the config directory, not all of /etc');
});
