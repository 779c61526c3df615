// Development-only mock of the console API (src/console/API.md), in memory, serving ui-dist/.
// Not shipped, not used by tests that claim to test the product.
//   npx tsx ui/dev/mock.ts [PORT]      (password: "secret")
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { join, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const DIST = fileURLToPath(new URL('../../ui-dist/', import.meta.url));
const port = Number(process.argv[2] ?? 8788);
const sessions = new Map<string, string>(); // cookie -> csrf

const state = {
  enabled: false,
  mode: 'tproxy' as 'redirect' | 'tproxy',
  lan: { interfaces: ['eth1'], sources: ['192.168.1.0/24'] },
  tcpNode: 'direct',
  udpNode: 'same',
  nodes: [
    { name: 'hk1', type: 'socks5', server: '203.0.113.10', port: 1080, uri: 'socks5://user:***@203.0.113.10:1080' },
  ] as { name: string; type: string; server: string; port: number; uri: string }[],
  subscriptions: [] as { url: string; nodes: string[]; updatedAt: string | null; error?: string }[],
  dns: { nameservers: ['1.1.1.1', '9.9.9.9'], cache: true, fakeIp: false },
  rules: [
    { 'domain-suffix': ['corp.example'], outbound: 'direct' },
    { 'domain-keyword': ['ads'], outbound: 'reject' },
    { cidr: ['192.168.0.0/16'], port: [25, '8000-9000'], outbound: 'direct' },
  ] as Record<string, unknown>[],
  checkTargets: ['www.google.com:443', 'example.com:80'],
  applied: false,
  dnsServer: { listen: { host: null, port: 53 } as { host: string | null; port: number } | null, fakeIpRange: null as string | null, lanAddresses: ['192.168.1.1'] },
};
let conns = [
  { id: '1-1', src: '192.168.1.23:51234', dst: '142.250.1.1:443', domain: 'www.google.com', node: 'hk1', up: 1234, down: 884422, startedAt: new Date(Date.now() - 65_000).toISOString() },
  { id: '1-2', src: '192.168.1.40:40022', dst: '93.184.216.34:80', domain: 'example.com', node: 'direct', up: 312, down: 1630, startedAt: new Date(Date.now() - 4_000).toISOString() },
  { id: '1-3', src: '192.168.1.41:53311', dst: '10.0.0.9:22', node: '', up: 0, down: 0, startedAt: new Date().toISOString() },
];
const clients = new Set<ServerResponse>();
const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
};
const bad = (res: ServerResponse, errors: { field: string; message: string }[]) => send(res, 400, { errors });
const pushState = () => { for (const c of clients) c.write(`event: state\ndata: ${JSON.stringify(state)}\n\n`); };
const isCidr = (s: string) => /^\d+\.\d+\.\d+\.\d+\/(\d|[12]\d|3[0-2])$/.test(s);

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  let s = '';
  for await (const c of req) s += c;
  return s ? (JSON.parse(s) as Record<string, unknown>) : {};
}
function cookie(req: IncomingMessage): string | undefined {
  return /tpx_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
}

setInterval(() => {
  for (const c of conns) { c.up += Math.floor(Math.random() * 5000); c.down += Math.floor(Math.random() * 80000); }
  for (const cl of clients) {
    cl.write(`event: connections\ndata: ${JSON.stringify(conns)}\n\n`);
    cl.write(`event: throughput\ndata: ${JSON.stringify({ t: Date.now(), up: Math.floor(Math.random() * 20000), down: Math.floor(50000 + Math.random() * 300000) })}\n\n`);
  }
}, 1000);

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const p = url.pathname;
  res.setHeader('content-security-policy', "default-src 'self'");
  if (!p.startsWith('/api/')) {
    const file = p === '/' ? 'index.html' : p.slice(1);
    const full = join(DIST, file);
    if (!full.startsWith(DIST) || !existsSync(full)) return send(res, 404, { error: 'not found' });
    const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
    res.writeHead(200, { 'content-type': types[extname(full)] ?? 'application/octet-stream' });
    return res.end(readFileSync(full));
  }
  const m = req.method ?? 'GET';
  const sid = cookie(req);
  const csrf = sid ? sessions.get(sid) : undefined;
  if (p === '/api/login' && m === 'POST') {
    const b = await body(req);
    if (b.password !== 'secret') return send(res, 401, { error: 'wrong password' });
    const id = randomBytes(16).toString('hex');
    const token = randomBytes(16).toString('hex');
    sessions.set(id, token);
    res.setHeader('set-cookie', `tpx_session=${id}; HttpOnly; SameSite=Strict; Path=/`);
    return send(res, 200, { csrf: token });
  }
  if (p === '/api/session') return send(res, 200, csrf ? { authenticated: true, csrf } : { authenticated: false });
  if (!csrf) return send(res, 401, { error: 'not logged in' });
  if (m !== 'GET' && req.headers['x-csrf-token'] !== csrf) return send(res, 403, { error: 'bad CSRF token' });
  await new Promise((r) => setTimeout(r, 150));
  if (p === '/api/logout') { sessions.delete(sid!); return send(res, 200, {}); }
  if (p === '/api/state') return send(res, 200, state);
  if (p === '/api/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write(`event: state\ndata: ${JSON.stringify(state)}\n\n`);
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (p === '/api/settings' && m === 'PUT') {
    const b = await body(req) as Partial<typeof state>;
    const errs: { field: string; message: string }[] = [];
    const names = ['direct', ...state.nodes.map((n) => n.name)];
    if (b.tcpNode !== undefined && !names.includes(b.tcpNode)) errs.push({ field: 'tcpNode', message: `unknown node '${b.tcpNode}'` });
    if (b.udpNode !== undefined && ![...names, 'same'].includes(b.udpNode)) errs.push({ field: 'udpNode', message: `unknown node '${b.udpNode}'` });
    for (const s of b.lan?.sources ?? []) if (!isCidr(s)) errs.push({ field: 'lan.sources', message: `'${s}' is not a CIDR` });
    for (const t of b.checkTargets ?? []) if (!/^[^:\s]+:\d+$/.test(t)) errs.push({ field: 'checkTargets', message: `'${t}' is not host:port` });
    if (errs.length) return bad(res, errs);
    Object.assign(state, b);
    if (b.enabled !== undefined) state.applied = b.enabled;
    pushState();
    return send(res, 200, state);
  }
  if (p === '/api/nodes' && m === 'POST') {
    const b = await body(req);
    const added: string[] = [];
    const lines = String(b.links ?? '').split(/\s+/).filter(Boolean);
    for (const [i, l] of lines.entries()) {
      const mm = /^(ss|socks5|http):\/\/(?:[^@]*@)?([^:/#]+):(\d+)(?:#(.*))?$/.exec(l);
      if (!mm) return bad(res, [{ field: 'links', message: `line ${i + 1}: not a supported link (ss://, socks5://, http://)` }]);
      const name = mm[4] || `${mm[1]}-${mm[2]}`;
      state.nodes.push({ name, type: mm[1]!, server: mm[2]!, port: Number(mm[3]), uri: l.replace(/:[^:@/]+@/, ':***@') });
      added.push(name);
    }
    pushState();
    return send(res, 200, { added, state });
  }
  let mm = /^\/api\/nodes\/([^/]+)(\/test)?$/.exec(p);
  if (mm) {
    const name = decodeURIComponent(mm[1]!);
    const node = state.nodes.find((n) => n.name === name);
    if (!node) return send(res, 404, { error: 'no such node' });
    if (mm[2]) return send(res, 200, Math.random() < 0.8 ? { ok: true, connectMs: 12, handshakeMs: 48 } : { ok: false, error: 'ECONNREFUSED' });
    if (m === 'DELETE') {
      if (state.tcpNode === name) return bad(res, [{ field: 'name', message: `in use as the TCP node` }]);
      state.nodes = state.nodes.filter((n) => n !== node);
      pushState();
      return send(res, 200, state);
    }
    if (m === 'PUT') {
      const b = await body(req);
      if (b.name !== undefined && !/^[A-Za-z0-9_.-]+$/.test(String(b.name))) return bad(res, [{ field: 'name', message: 'only A-Z a-z 0-9 _ . -' }]);
      if (!/^(ss|socks5|http):\/\//.test(String(b.uri))) return bad(res, [{ field: 'uri', message: 'not a supported link' }]);
      if (b.name) node.name = String(b.name);
      node.uri = String(b.uri);
      pushState();
      return send(res, 200, state);
    }
  }
  if (p === '/api/subscriptions' && m === 'POST') {
    const b = await body(req);
    if (!/^https?:\/\//.test(String(b.url))) return bad(res, [{ field: 'url', message: 'must be an http(s) URL' }]);
    state.subscriptions.push({ url: String(b.url), nodes: [], updatedAt: null, error: 'fetch failed: ENOTFOUND' });
    return send(res, 200, state);
  }
  if (p === '/api/subscriptions/refresh') return send(res, 200, state);
  if (p === '/api/subscriptions' && m === 'DELETE') {
    state.subscriptions = state.subscriptions.filter((s) => s.url !== url.searchParams.get('url'));
    return send(res, 200, state);
  }
  if (p === '/api/dns' && m === 'PUT') {
    const b = await body(req) as Partial<typeof state.dns>;
    for (const n of b.nameservers ?? []) if (!/^[\d.:]+$/.test(n)) return bad(res, [{ field: 'dns.nameservers', message: `'${n}' is not an IP address` }]);
    Object.assign(state.dns, b);
    state.dnsServer.fakeIpRange = state.dns.fakeIp ? '198.18.0.0/15' : null;
    return send(res, 200, state);
  }
  if (p === '/api/dns/flush') return send(res, 200, { flushed: 1 });
  if (p === '/api/rules' && m === 'PUT') {
    const b = await body(req) as { rules: Record<string, unknown>[] };
    const errs: { field: string; message: string }[] = [];
    const outs = ['direct', 'reject', ...state.nodes.map((n) => n.name)];
    b.rules.forEach((r, i) => {
      if (!outs.includes(String(r.outbound))) errs.push({ field: `rules[${i}].outbound`, message: `unknown outbound '${String(r.outbound)}'` });
      for (const c of (r.cidr as string[] | undefined) ?? []) if (!isCidr(c)) errs.push({ field: `rules[${i}].cidr`, message: `'${c}' is not a CIDR` });
      if (Object.keys(r).length === 1) errs.push({ field: `rules[${i}]`, message: 'a rule needs at least one matcher' });
    });
    if (errs.length) return bad(res, errs);
    state.rules = b.rules;
    pushState();
    return send(res, 200, state);
  }
  mm = /^\/api\/connections\/(.+)$/.exec(p);
  if (mm && m === 'DELETE') { conns = conns.filter((c) => c.id !== decodeURIComponent(mm![1]!)); return send(res, 200, {}); }
  if (p === '/api/connections') return send(res, 200, conns);
  if (p === '/api/check') {
    const b = await body(req) as { targets?: string[] };
    const t = b.targets ?? state.checkTargets;
    return send(res, 200, {
      results: t.map((target, i) => ({
        target,
        direct: i === 0 ? { ok: false, error: 'connect ENETUNREACH 10.80.4.2:80 - Local (0.0.0.0:0)' } : { ok: true, ms: 23 },
        node: { ok: true, ms: 87 + i, node: state.tcpNode },
      })),
    });
  }
  send(res, 404, { error: 'no such route' });
}).listen(port, '127.0.0.1', () => console.log(`mock console on http://127.0.0.1:${port}/ (password: secret)`));
