// Differential-fuzz peer: Node's own HTTP server. usage: node parsed_node.mjs PORT
// Every request Node's parser hands over (requests, Upgrade and CONNECT requests) is printed
// to stdout as one JSON line {"server":"node","method","target","headers":[[name,value],...]}.
// Answers 200 (keep-alive); an Upgrade to a path starting /ws101 gets 101 and the socket
// is then only drained (no more HTTP on it, as after a real switch); other Upgrade and
// CONNECT requests get a 200 / 405 and the connection closes (Node stops parsing there).
import http from 'node:http';

const port = Number(process.argv[2]);
const record = (req) => {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  process.stdout.write(`${JSON.stringify({ server: 'node', method: req.method, target: req.url, headers })}\n`);
};
const server = http.createServer((req, res) => {
  record(req);
  req.resume();
  req.on('end', () => res.end('parsed\n'));
});
server.on('upgrade', (req, socket) => {
  record(req);
  if (req.url.startsWith('/ws101')) {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.resume();
  } else {
    socket.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n');
  }
  socket.on('error', () => {});
});
server.on('connect', (req, socket) => {
  record(req);
  socket.on('error', () => {});
  socket.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
});
server.on('clientError', (_e, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});
server.keepAliveTimeout = 2000;
server.listen(port, '::', () => process.stderr.write(`listening :: ${port}\n`));
