// The demo's SOCKS5 node (shipped in dist/, so the demo needs no microsocks): RFC 1928
// CONNECT only, no authentication, IPv4 / IPv6 / domain addresses. Usage:
// node socks5-node.js LISTEN_IP PORT. Prints `listening PORT` when ready and one
// `connect FROM -> DST local LOCAL` line per relayed connection (LOCAL: the address the
// node connected from, i.e. what the destination sees).
import net from 'node:net';

const [host = '0.0.0.0', portText = '1080'] = process.argv.slice(2);
const unmap = (a = '') => (a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
const ep = (a: string | undefined, p: number | undefined) => {
  const h = unmap(a);
  return h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`;
};

/** The CONNECT request in `b`: its target and length, 'more' if incomplete, or an error reply code. */
function parseRequest(b: Buffer): { host: string; port: number; len: number } | 'more' | number {
  if (b.length < 5) return 'more';
  if (b[0] !== 5) return 1;
  if (b[1] !== 1) return 7; // command not supported
  const atyp = b[3];
  const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + b[4]! : -1;
  if (addrLen < 0) return 8; // address type not supported
  const len = 4 + addrLen + 2;
  if (b.length < len) return 'more';
  const raw = b.subarray(4, 4 + addrLen);
  const target =
    atyp === 1
      ? [...raw].join('.')
      : atyp === 4
        ? (raw.toString('hex').match(/.{4}/g) ?? []).join(':')
        : raw.subarray(1).toString('latin1');
  return { host: target, port: b.readUInt16BE(len - 2), len };
}

const reply = (code: number) => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

const server = net.createServer((client) => {
  let buf = Buffer.alloc(0);
  let greeted = false;
  client.on('error', () => client.destroy());
  const onData = (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!greeted) {
      if (buf.length < 2 || buf.length < 2 + buf[1]!) return;
      if (buf[0] !== 5 || !buf.subarray(2, 2 + buf[1]!).includes(0)) return void client.end(Buffer.from([5, 0xff]));
      client.write(Buffer.from([5, 0]));
      buf = buf.subarray(2 + buf[1]!);
      greeted = true;
    }
    const req = parseRequest(buf);
    if (req === 'more') return;
    client.off('data', onData);
    if (typeof req === 'number') return void client.end(reply(req));
    client.pause();
    const rest = buf.subarray(req.len);
    const up = net.connect({ host: req.host, port: req.port });
    let connected = false;
    up.once('connect', () => {
      connected = true;
      process.stdout.write(
        `connect ${ep(client.remoteAddress, client.remotePort)} -> ${ep(up.remoteAddress, up.remotePort)} local ${ep(up.localAddress, up.localPort)}\n`,
      );
      client.write(reply(0));
      if (rest.length) up.write(rest);
      client.pipe(up).pipe(client);
      client.resume();
    });
    up.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected) client.end(reply(e.code === 'ECONNREFUSED' ? 5 : e.code === 'ENETUNREACH' ? 3 : 4));
      else client.destroy();
    });
    client.on('close', () => up.destroy());
  };
  client.on('data', onData);
});
server.on('error', (e) => {
  process.stderr.write(`socks5-node: ${e.message}\n`);
  process.exit(1);
});
server.listen({ host, port: Number(portText) }, () => process.stdout.write(`listening ${portText}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
