// e2e client that reads late: node late_reader.mjs HOST PORT DELAY_MS
// Writes all of stdin at once, does not read for DELAY_MS (the response backs up in the
// proxy and the server), then reads until the peer closes (or 5 s of silence) and prints
// {"total","head","tail"}: the byte count and the first and last 400 bytes (latin1).
import net from 'node:net';

const [host, port, delay] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const sock = net.connect({ host, port: Number(port) });
const got = [];
let timer;
const done = () => {
  const all = Buffer.concat(got);
  const head = all.subarray(0, 400).toString('latin1');
  const tail = all.subarray(Math.max(0, all.length - 400)).toString('latin1');
  process.stdout.write(`${JSON.stringify({ total: all.length, head, tail })}\n`);
  sock.destroy();
  process.exit(0);
};
const arm = () => {
  clearTimeout(timer);
  timer = setTimeout(done, 5000);
};
sock.on('connect', () => {
  sock.write(Buffer.concat(chunks));
  sock.pause();
  setTimeout(() => {
    sock.on('data', (d) => {
      got.push(d);
      arm();
    });
    sock.resume();
    arm();
  }, Number(delay));
});
sock.on('end', done);
sock.on('error', (e) => {
  process.stderr.write(`late_reader: ${e.code ?? e.message}\n`);
  done();
});
