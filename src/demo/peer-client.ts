// The demo's HTTP client: one GET, then one JSON line on stdout with the client socket's
// own address and port (what a proxy should report as src), the status and the server's
// JSON answer. Usage: node peer-client.js URL. Exit 1 with a one-line reason on failure.
import http from 'node:http';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: peer-client.js URL\n');
  process.exit(2);
}

function unmap(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

let local = { address: '', port: 0 };
const req = http.get(url, { agent: false, timeout: 5000, headers: { 'user-agent': 'tranproxy-demo' } }, (res) => {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not ours: report the raw text */
    }
    process.stdout.write(`${JSON.stringify({ status: res.statusCode, local, body })}\n`);
  });
});
req.on('socket', (s) => {
  s.once('connect', () => {
    local = { address: unmap(s.localAddress), port: s.localPort ?? 0 };
  });
});
req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
req.on('error', (e: NodeJS.ErrnoException) => {
  process.stderr.write(`${url}: ${e.code ?? ''} ${e.message}\n`);
  process.exit(1);
});
