// The data plane logs one line per connection; written one by one, each line is a write(2)
// of its own (stderr is synchronous for files and pipes), which at thousands of new
// connections a second cost more than the connections' own bookkeeping. This sink joins
// the lines of one event-loop turn into one write, and flushes what is left at exit.
export function batchedStderr(maxBytes = 64 << 10): (line: string) => void {
  let buf = '';
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (!buf) return;
    const out = buf;
    buf = '';
    process.stderr.write(out);
  };
  process.on('exit', flush);
  return (line) => {
    buf += line;
    if (buf.length >= maxBytes) return flush();
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}
