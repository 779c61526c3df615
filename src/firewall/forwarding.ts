// Packet forwarding for a gateway: turned on with the rules, the previous values restored
// when the rules go. The previous values live in a small state file keyed by network
// namespace, so `tranproxy rules remove` after a crash still restores them.
import { mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import type { Family } from './plan.js';
import { runAt, type Target } from './target.js';

const STATE_DIR = '/run/tranproxy';
const KEYS: Record<Family, string> = { ipv4: 'net.ipv4.ip_forward', ipv6: 'net.ipv6.conf.all.forwarding' };

function stateFile(target?: Target): string {
  // The netns name when we run tools inside one; else this process's own namespace inode.
  const id = target?.netns ?? readlinkSync('/proc/self/ns/net').replace(/\D/g, '');
  return `${STATE_DIR}/forwarding-${id}.json`;
}

function read(key: string, target?: Target): string | undefined {
  const r = runAt(target, 'sysctl', ['-n', key], { allowFailure: true });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function write(key: string, value: string, target?: Target): void {
  runAt(target, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}

/** Enable forwarding for `families`, remembering the old values (only the first time). */
export function enableForwarding(families: Family[], target?: Target): void {
  const file = stateFile(target);
  let saved: Record<string, string> = {};
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    // no earlier state
  }
  mkdirSync(STATE_DIR, { recursive: true });
  for (const f of families) {
    const key = KEYS[f];
    const old = read(key, target);
    if (old === undefined) continue; // e.g. IPv6 disabled in this kernel
    // A saved value stands only while our '1' does: a value other than '1' now means the file
    // outlived what it recorded (a namespace deleted under a crashed run, its inode reused).
    if (!(key in saved) || old !== '1') saved[key] = old;
    // Saved before the change: if a later write fails, the rollback still restores this one.
    writeFileSync(file, JSON.stringify(saved));
    if (old !== '1') write(key, '1', target);
  }
}

/** Restore what enableForwarding changed; idempotent. */
export function restoreForwarding(target?: Target): void {
  const file = stateFile(target);
  let saved: Record<string, string>;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    return;
  }
  for (const [key, value] of Object.entries(saved)) if (read(key, target) !== value) write(key, value, target);
  rmSync(file, { force: true });
}

/** Docker's bridge-nf-call-iptables=1 sends bridged frames through iptables and breaks TPROXY. */
export function bridgeNfWarning(target?: Target): string | undefined {
  const v = read('net.bridge.bridge-nf-call-iptables', target);
  return v === '1'
    ? 'net.bridge.bridge-nf-call-iptables=1 (br_netfilter, e.g. from Docker): bridged traffic passes through netfilter and TPROXY may misroute it; set it to 0 if LAN hosts sit on a bridge'
    : undefined;
}
