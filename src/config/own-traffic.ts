// tranproxy's own traffic, as the firewall plan and the data plane must both see it. Light
// on purpose: the data-plane child imports it without the settings parser.
import type { CaptureMode, CapturePoint } from '../firewall/plan.js';

/** Ports tranproxy serves itself on (listener, admin API, console, proxy mode). */
export function ownPortsOf(cfg: {
  listenPort: number;
  admin: { port: number } | undefined;
  console: { port: number } | undefined;
  proxyMode: { listen: { port: number }[] } | undefined;
}): number[] {
  return [
    cfg.listenPort,
    ...(cfg.admin ? [cfg.admin.port] : []),
    ...(cfg.console ? [cfg.console.port] : []),
    ...(cfg.proxyMode?.listen.map((l) => l.port) ?? []),
  ];
}

/** SO_MARK on connections to a local app when TPROXY inbound keeps the client's address; 0: none. */
export function inboundMarkOf(cfg: {
  capture: readonly CapturePoint[];
  mode: CaptureMode;
  preserveSource: boolean;
  tproxyMark: number;
}): number {
  return cfg.capture.includes('inbound') && cfg.mode === 'tproxy' && cfg.preserveSource ? cfg.tproxyMark : 0;
}
