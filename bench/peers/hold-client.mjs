// Opens COUNT connections to HOST:PORT (at most PARALLEL connecting at once), waits for the
// server's one-byte greeting on each, prints "held N failed M", then keeps them open until
// stdin closes or SIGTERM. With --close it closes them all right away and prints "closed".
// With --http each connection sends one keep-alive GET and waits for the whole answer of
// hold-server --http; the line then ends "injected K" (answers whose body said the injected
// headers arrived). Usage: node hold-client.mjs HOST PORT COUNT [PARALLEL] [--close] [--http]
import net from 'node:net';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const closeAtOnce = process.argv.includes('--close');
const http = process.argv.includes('--http');
const [host, port, count, parallel] = [args[0], Number(args[1]), Number(args[2]), Number(args[3] ?? 200)];
const sockets = [];
let held = 0;
let failed = 0;
let injected = 0;
let next = 0;

function openOne(attempt) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ok) {
        held++;
        sockets.push(s);
        resolve();
      } else {
        s.destroy();
        if (attempt < 3) setTimeout(() => openOne(attempt + 1).then(resolve), 200);
        else {
          failed++;
          resolve();
        }
      }
    };
    const timer = setTimeout(() => finish(false), 10_000);
    if (http) {
      s.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
      let answer = '';
      s.on('data', (d) => {
        answer += d.toString('latin1');
        const end = answer.indexOf('\r\n\r\n');
        if (end < 0 || answer.length < end + 5) return;
        if (answer[end + 4] === 'h') injected++;
        finish(true);
      });
    } else s.once('data', () => finish(true));
    s.on('error', () => finish(false));
    s.on('close', () => finish(false));
  });
}

async function worker() {
  while (next < count) {
    next++;
    await openOne(0);
  }
}

await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
console.log(`held ${held} failed ${failed}${http ? ` injected ${injected}` : ''}`);
const shut = () => {
  for (const s of sockets) s.destroy();
  console.log('closed');
  process.exit(0);
};
if (closeAtOnce) shut();
process.on('SIGTERM', shut);
process.stdin.on('end', shut);
process.stdin.resume();
