// Worker-thread receive loop for transparent UDP listeners (the `worker` backend of
// udp-tproxy.ts, used when koffi offers no event-loop polling). Blocks in poll(2) on the
// listener fds, drains ready ones with recvmmsg(MSG_DONTWAIT), posts one transferred
// ArrayBuffer per batch. Stops when the main thread sets the stop flag and shuts the fds
// down (which wakes poll); never closes the fds itself (the main thread does, afterwards).
import { parentPort, workerData } from 'node:worker_threads';
import { addressOf, sysPoll, sysRecvmmsg } from './ffi.js';
import { MSG_DONTWAIT } from './linux.js';
import { RecvBatchLayout } from './udp-msg.js';
import { encodeWorkerBatch, type WorkerInit } from './udp-worker-protocol.js';

const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLL_TIMEOUT_MS = 250;

function main(init: WorkerInit): void {
  const port = parentPort!;
  const control = new Int32Array(init.control);
  const layout = new RecvBatchLayout(init.batch, init.slotSize, addressOf);
  const vecAddr = addressOf(layout.vec);
  // struct pollfd { int fd; short events; short revents; }
  const pfds = Buffer.alloc(8 * init.fds.length);
  init.fds.forEach((fd, i) => {
    pfds.writeInt32LE(fd, i * 8);
    pfds.writeInt16LE(POLLIN, i * 8 + 4);
  });
  const pfdsAddr = addressOf(pfds);
  port.postMessage({ ready: true });
  while (Atomics.load(control, 0) === 0) {
    // Bounded queue: while the main thread lags, stop reading and let the kernel drop.
    let inflight = Atomics.load(control, 1);
    while (inflight >= init.maxInflight && Atomics.load(control, 0) === 0) {
      Atomics.wait(control, 1, inflight, 100);
      inflight = Atomics.load(control, 1);
    }
    // A finite timeout: Worker.terminate() (also on process.exit) takes effect only when JS
    // runs again, so a poll(2) without timeout would hang the process's exit.
    if (sysPoll(pfdsAddr, init.fds.length, POLL_TIMEOUT_MS) <= 0) continue;
    if (Atomics.load(control, 0) !== 0) break;
    for (let i = 0; i < init.fds.length; i++) {
      const revents = pfds.readInt16LE(i * 8 + 6);
      if (revents & (POLLHUP | POLLERR)) return; // shut down under us: closing
      if (!(revents & POLLIN)) continue;
      const n = sysRecvmmsg(init.fds[i]!, vecAddr, layout.count, MSG_DONTWAIT);
      if (n > 0) {
        const batch = encodeWorkerBatch(layout, n);
        layout.reset(n);
        Atomics.add(control, 1, 1);
        port.postMessage({ batch }, [batch]);
      }
    }
  }
}

main(workerData as WorkerInit);
