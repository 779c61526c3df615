// Idle TCP server for the memory benchmark: accepts connections, writes one byte on each
// (so the client can tell the connection reaches all the way through a proxy), then holds
// them open without further traffic. With --http it waits for a request head instead and
// answers it (keep-alive) with a one-byte body: "h" if the head carries the injected headers
// a: 1, b: 2 and c: 3, "-" if not. Usage: node hold-server.mjs PORT [BIND] [--http]
import net from 'node:net';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const http = process.argv.includes('--http');
const port = Number(args[0] ?? 7000);
const bind = args[1] ?? '0.0.0.0';
const INJECTED = [/\r\na: 1\r\n/i, /\r\nb: 2\r\n/i, /\r\nc: 3\r\n/i];
let open = 0;

function answerHttp(s) {
  let head = '';
  s.on('data', (d) => {
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    const got = head.slice(0, end + 2);
    head = head.slice(end + 4);
    const body = INJECTED.every((re) => re.test(got)) ? 'h' : '-';
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${body}`);
  });
}

const server = net.createServer((s) => {
  open++;
  s.on('error', () => {});
  s.on('close', () => open--);
  if (http) answerHttp(s);
  else s.write('!');
});
server.on('error', (e) => {
  console.error(`hold-server: ${e.message}`);
  process.exit(1);
});
server.listen({ port, host: bind, backlog: 4096 }, () => console.log(`listening ${bind}:${port}`));
process.on('SIGUSR2', () => console.log(`open ${open}`));
