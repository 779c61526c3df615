// Slow (slowloris-style) client for e2e tests: node slow_client.mjs HOST PORT EVERY_MS
// Reads all of stdin, then sends it one byte every EVERY_MS. Prints everything received;
// on stderr reports "first byte after N ms" and "closed after N ms" (from the connect).
// Stops dripping when the server closes; gives up after 60 s.
import net from 'node:net';

const [host, port, every = '200'] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const payload = Buffer.concat(chunks);
const sock = net.connect({ host, port: Number(port), allowHalfOpen: true });
const got = [];
let t0 = 0;
let timer;
const done = (code) => {
  clearInterval(timer);
  process.stderr.write(`closed after ${Date.now() - t0} ms\n`);
  process.stdout.write(Buffer.concat(got));
  sock.destroy();
  process.exit(code);
};
setTimeout(() => done(1), 60_000).unref();
sock.on('connect', () => {
  t0 = Date.now();
  let i = 0;
  timer = setInterval(() => {
    if (i < payload.length && !sock.writableEnded) sock.write(payload.subarray(i, ++i));
  }, Number(every));
});
sock.on('data', (d) => {
  if (got.length === 0) process.stderr.write(`first byte after ${Date.now() - t0} ms\n`);
  got.push(d);
});
sock.on('end', () => done(0));
sock.on('error', (e) => {
  process.stderr.write(`slow_client: ${e.code ?? e.message}\n`);
  done(got.length ? 0 : 1);
});
