// Mixed traffic for scripts/soak.ts: node soak_client.mjs '{json}'
//   http:  { host, port, conns, header }  keep-alive GETs; each answer must show the injected header
//   bulk:  { host, port, conns, bytes }   send BYTES to an echo server, the same bytes must come back
//   short: { host, port, conns }          connect, one line, its echo, close — over and over
//   udp:   { host, port, rate }           datagrams per second to a UDP echo; a reply within 2 s
//   durationMs, reportMs
// Prints `stats {json}` (cumulative counters) every reportMs and at the end, then exits 0.
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';

const cfg = JSON.parse(process.argv[2]);
const stats = {};
const count = (kind, field, n = 1) => {
  stats[kind] ??= { ok: 0, err: 0 };
  stats[kind][field] = (stats[kind][field] ?? 0) + n;
};
const errors = {};
const fail = (kind, e) => {
  count(kind, 'err');
  const k = `${kind}:${e?.code ?? e?.message ?? e}`;
  errors[k] = (errors[k] ?? 0) + 1;
};
const until = Date.now() + cfg.durationMs;
const running = () => Date.now() < until;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function httpLoop(c) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const [name, value] = c.header.split(':').map((s) => s.trim());
  while (running()) {
    await new Promise((resolve) => {
      const req = http.get({ host: c.host, port: c.port, path: '/soak', agent, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            const headers = JSON.parse(body).headers;
            const got = headers.filter(([n, v]) => n.toLowerCase() === name.toLowerCase() && v === value).length;
            if (res.statusCode === 200 && got === 1) count('http', 'ok');
            else fail('http', new Error(`status ${res.statusCode}, injected header x${got}`));
          } catch (e) {
            fail('http', e);
          }
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        fail('http', e);
        resolve();
      });
    });
  }
  agent.destroy();
}

function bulkOnce(c) {
  return new Promise((resolve) => {
    const data = randomBytes(c.bytes);
    data[0] = 0x7b; // '{': not a token character, so not HTTP (nor TLS): relayed untouched on injection ports
    const want = createHash('sha256').update(data).digest('hex');
    const got = createHash('sha256');
    let n = 0;
    const s = net.connect({ host: c.host, port: c.port });
    s.setTimeout(30_000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.end(data));
    s.on('data', (d) => {
      n += d.length;
      got.update(d);
    });
    s.on('error', (e) => {
      fail('bulk', e);
      resolve();
    });
    s.on('close', (hadError) => {
      if (hadError) return;
      if (n === c.bytes && got.digest('hex') === want) {
        count('bulk', 'ok');
        count('bulk', 'bytes', n);
      } else fail('bulk', new Error(`got ${n} of ${c.bytes} bytes or wrong bytes`));
      resolve();
    });
  });
}

function shortOnce(c, i) {
  return new Promise((resolve) => {
    const line = `{short ${i}}\n`; // '{' is not a token character: not HTTP, relayed untouched on injection ports
    let got = '';
    const s = net.connect({ host: c.host, port: c.port });
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write(line));
    s.setEncoding('utf8').on('data', (d) => {
      got += d;
      if (got.length >= line.length) s.end();
    });
    s.on('error', (e) => {
      fail('short', e);
      resolve();
    });
    s.on('close', (hadError) => {
      if (hadError) return;
      if (got === line) count('short', 'ok');
      else fail('short', new Error('wrong echo'));
      resolve();
    });
  });
}

async function loop(kind, c, once) {
  let i = 0;
  while (running()) await once(c, i++);
}

async function udpLoop(c) {
  const sock = dgram.createSocket('udp4');
  const pending = new Map();
  sock.on('message', (m) => {
    const t = pending.get(m.toString());
    if (t) {
      clearTimeout(t);
      pending.delete(m.toString());
      count('udp', 'ok');
    }
  });
  let seq = 0;
  while (running()) {
    const msg = `udp ${seq++}`;
    pending.set(
      msg,
      setTimeout(() => {
        pending.delete(msg);
        fail('udp', new Error('no reply in 2 s'));
      }, 2000),
    );
    sock.send(msg, c.port, c.host);
    await sleep(1000 / c.rate);
  }
  await sleep(2100);
  sock.close();
}

const report = () => process.stdout.write(`stats ${JSON.stringify({ ...stats, errors })}\n`);
const timer = setInterval(report, cfg.reportMs);
const jobs = [];
if (cfg.http) for (let i = 0; i < cfg.http.conns; i++) jobs.push(httpLoop(cfg.http));
if (cfg.bulk) for (let i = 0; i < cfg.bulk.conns; i++) jobs.push(loop('bulk', cfg.bulk, bulkOnce));
if (cfg.short) for (let i = 0; i < cfg.short.conns; i++) jobs.push(loop('short', cfg.short, shortOnce));
if (cfg.udp) jobs.push(udpLoop(cfg.udp));
await Promise.all(jobs);
clearInterval(timer);
report();
process.exit(0);
