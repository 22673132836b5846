// Helper process for the memory benchmark: `server PORT` accepts and holds connections; `client PORT N` opens N and holds them.
import net from 'node:net';

const [mode, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const held: net.Socket[] = [];

if (mode === 'server') {
  const server = net.createServer((s) => {
    held.push(s);
    s.on('error', () => s.destroy());
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
} else if (mode === 'client') {
  const count = Number(countText);
  let open = 0;
  let failed = 0;
  const connectOne = (): void => {
    const s = net.connect(port, '127.0.0.1', () => {
      // Each connection carries one byte so the proxy has set up both sides.
      s.write('x');
      if (++open + failed === count) process.stdout.write(`ready ${open} ${failed}\n`);
    });
    s.on('error', () => {
      if (++failed + open === count) process.stdout.write(`ready ${open} ${failed}\n`);
    });
    held.push(s);
  };
  // Open in batches so the listen backlog is never the limit being measured.
  let started = 0;
  const batch = (): void => {
    for (let i = 0; i < 500 && started < count; i++, started++) connectOne();
    if (started < count) setTimeout(batch, 20);
  };
  batch();
} else {
  process.stderr.write('usage: hold-connections server PORT | client PORT N\n');
  process.exit(2);
}
