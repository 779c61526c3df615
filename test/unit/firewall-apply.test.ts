// Backend detection, with PATH pointed at a directory of stand-in tools. No root needed.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ToolMissingError } from '../../src/errors.js';
import { detectBackend } from '../../src/firewall/apply.js';

test('detectBackend: nft when present, else iptables, else ToolMissingError naming nftables', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpxfw-path-'));
  const path = process.env.PATH;
  const tool = (name: string) => {
    writeFileSync(join(dir, name), '#!/bin/sh\nexit 0\n');
    chmodSync(join(dir, name), 0o755);
  };
  try {
    symlinkSync('/bin/sh', join(dir, 'sh')); // hasTool asks `sh -c 'command -v …'`
    process.env.PATH = dir;
    assert.throws(
      () => detectBackend(),
      (e: unknown) => e instanceof ToolMissingError && e.debianPackage === 'nftables',
    );
    tool('iptables-restore');
    assert.equal(detectBackend(), 'iptables');
    tool('nft');
    assert.equal(detectBackend({ netns: 'unused' }), 'nft');
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
});
