// Entry point of the data-plane child process. It receives its listeners as inherited file
// descriptors and its settings over IPC, so it can run unprivileged (the supervisor keeps
// the privileges needed for the firewall).
import { createLogger } from '../observe/log.js';
import { compileInjectConfig, type CompiledInject } from '../http/inject-config.js';
import { RequestRewriter } from '../http/rewriter.js';
import { NameResolver } from '../dns/resolver.js';
import { startDataPlane, type DataPlane, type DataPlaneRouting } from './dataplane.js';
import { compileRules } from '../route/index.js';
import { createOutbound, parseNodeUri, type TcpOutbound } from '../outbound/index.js';
import type { RoutingConfig } from '../config/routing.js';
import { startUdpTproxy, type UdpTproxy } from '../udp/index.js';
import { FIRST_LISTENER_FD, type FromChild, type ToChild } from './protocol.js';

function send(msg: FromChild): void {
  process.send?.(msg);
}

let plane: DataPlane | undefined;
let udp: UdpTproxy | undefined;

/** Outbounds and router from plain config (validated already by the supervisor). */
function buildRouting(cfg: RoutingConfig, mark: number, connectTimeoutMs: number): DataPlaneRouting {
  const outbounds = new Map<string, TcpOutbound>();
  for (const [name, node] of Object.entries(cfg.nodes)) {
    outbounds.set(
      name,
      createOutbound(parseNodeUri(node.uri, name), { ...(mark ? { mark } : {}), connectTimeoutMs: node.connectTimeoutMs ?? connectTimeoutMs }),
    );
  }
  return { router: compileRules(cfg.rules, cfg.defaultOutbound, [...outbounds.keys()]), outbounds, sniffTimeoutMs: cfg.sniffTimeoutMs };
}

function rewriterFactory(inject: CompiledInject): () => RequestRewriter {
  return () => new RequestRewriter(inject);
}

process.on('message', (msg: ToChild) => {
  if (msg.type === 'start') {
    const log = createLogger(msg.logFormat);
    const resolver = new NameResolver(msg.resolver);
    startDataPlane(
      {
        mode: msg.mode,
        listenPort: msg.listenPort,
        connectTimeoutMs: msg.connectTimeoutMs,
        idleTimeoutMs: msg.idleTimeoutMs,
        maxConnections: msg.maxConnections,
        outboundMark: msg.outboundMark,
        preserveSource: msg.preserveSource,
        ...(msg.dstFromHost ? { dstFromHost: { resolve: (n: string) => resolver.resolve(n), maxHeadBytes: msg.inject?.maxHeadBytes ?? 65536 } } : {}),
        ...(msg.routing ? { routing: buildRouting(msg.routing, msg.outboundMark, msg.connectTimeoutMs) } : {}),
        ...(msg.inject ? { rewriterFor: rewriterFactory(compileInjectConfig(msg.inject)) } : {}),
      },
      msg.listeners.map((l, i) => ({ fd: FIRST_LISTENER_FD + i, family: l.family, label: l.label })),
      log,
    )
      .then(async (p) => {
        plane = p;
        if (msg.udp) {
          udp = await startUdpTproxy({
            port: msg.listenPort,
            families: msg.udp.families,
            idleTimeoutMs: msg.udp.idleTimeoutMs,
            ...(msg.outboundMark ? { mark: msg.outboundMark } : {}),
            log,
          });
        }
        send({ type: 'ready' });
      })
      .catch((e: Error) => send({ type: 'failed', message: e.message }));
  } else if (msg.type === 'shutdown') {
    const p = plane;
    if (!p) process.exit(0);
    void Promise.all([p.stopAccepting(), udp?.close()])
      .then(() => p.drain(msg.drainMs))
      .then(() => {
        p.destroyAll();
        send({ type: 'drained' });
        process.exit(0);
      });
  }
});

// The supervisor going away (even by SIGKILL) closes the IPC channel: do not outlive it.
process.on('disconnect', () => process.exit(0));
// Signals are the supervisor's business (it forwards a shutdown message).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});
