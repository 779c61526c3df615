// Idle TCP server for the memory benchmark: accepts connections, writes one byte on each
// (so the client can tell the connection reaches all the way through a proxy), then holds
// them open without further traffic. Usage: node hold-server.mjs PORT [BIND]
import net from 'node:net';

const port = Number(process.argv[2] ?? 7000);
const bind = process.argv[3] ?? '0.0.0.0';
let open = 0;
const server = net.createServer((s) => {
  open++;
  s.on('error', () => {});
  s.on('close', () => open--);
  s.write('!');
});
server.on('error', (e) => {
  console.error(`hold-server: ${e.message}`);
  process.exit(1);
});
server.listen({ port, host: bind, backlog: 4096 }, () => console.log(`listening ${bind}:${port}`));
process.on('SIGUSR2', () => console.log(`open ${open}`));
