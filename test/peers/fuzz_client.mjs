// Differential-fuzz client: reads {"host","conns":[{"port","chunks":[base64...]}],"parallel",
// "gapMs","idleMs"} on stdin; opens the connections (`parallel` at a time), writes each
// chunk as its own write with `gapMs` between them (so splits reach the wire apart), then
// reads until the peer closes or is quiet for `idleMs`. Prints {"done","statuses"} where
// statuses counts the status codes of responses seen at the start of a read.
import net from 'node:net';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const job = JSON.parse(Buffer.concat(chunks).toString());
const statuses = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function one(conn) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: job.host, port: conn.port });
    sock.setNoDelay(true);
    let timer;
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, job.idleMs);
    };
    let got = '';
    sock.on('data', (d) => {
      got += d.toString('latin1');
      arm();
    });
    sock.on('close', () => {
      for (const m of got.matchAll(/HTTP\/1\.[01] (\d{3}) /g)) statuses[m[1]] = (statuses[m[1]] ?? 0) + 1;
      finish();
    });
    sock.on('error', () => {});
    sock.on('connect', async () => {
      for (const c of conn.chunks) {
        if (sock.destroyed) break;
        sock.write(Buffer.from(c, 'base64'));
        await sleep(job.gapMs);
      }
      arm();
    });
  });
}

let next = 0;
const worker = async () => {
  while (next < job.conns.length) await one(job.conns[next++]);
};
await Promise.all(Array.from({ length: job.parallel }, worker));
process.stdout.write(`${JSON.stringify({ done: job.conns.length, statuses })}\n`);
