// The demo's HTTP peer (shipped in dist/, unlike test/peers): answers every request with
// a JSON of what it saw — the client address and port of the TCP connection, its own
// address, the request line and headers. Usage: node peer-server.js [PORT]; dual stack.
// Prints `listening PORT` on stdout when ready, one `request from ADDR:PORT` line per request.
import http from 'node:http';

const port = Number(process.argv[2] ?? '80');

function unmap(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

const server = http.createServer((req, res) => {
  const s = req.socket;
  const seen = {
    client: { address: unmap(s.remoteAddress), port: s.remotePort ?? 0 },
    server: { address: unmap(s.localAddress), port: s.localPort ?? 0 },
    method: req.method,
    url: req.url,
    headers: req.headers,
  };
  const body = JSON.stringify(seen);
  process.stdout.write(`request from ${seen.client.address}:${seen.client.port}\n`);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
});
server.keepAliveTimeout = 1000;
server.on('error', (e) => {
  process.stderr.write(`peer-server: ${e.message}\n`);
  process.exit(1);
});
server.listen({ port, host: '::', ipv6Only: false }, () => process.stdout.write(`listening ${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
