// Raw TCP client for e2e tests: node raw_client.mjs HOST PORT [IDLE_MS]
// Writes all of stdin in one write (so pipelined requests share a segment), then prints
// everything received until the server closes or nothing arrives for IDLE_MS (default 1000).
import net from 'node:net';

const [host, port, idle = '1000'] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const payload = Buffer.concat(chunks);
const sock = net.connect({ host, port: Number(port) });
const got = [];
let timer;
const done = (code) => {
  process.stdout.write(Buffer.concat(got));
  sock.destroy();
  process.exit(code);
};
const arm = () => {
  clearTimeout(timer);
  timer = setTimeout(() => done(0), Number(idle));
};
sock.on('connect', () => {
  sock.write(payload);
  arm();
});
sock.on('data', (d) => {
  got.push(d);
  arm();
});
sock.on('end', () => done(0));
sock.on('error', (e) => {
  process.stderr.write(`raw_client: ${e.code ?? e.message}\n`);
  done(got.length ? 0 : 1);
});
