// The addon's SOCK_SEQPACKET calls without root: packets keep their boundaries, a descriptor crosses with SCM_RIGHTS and names
// the same open file on the other side, a hang-up is seen as close. (Namespace calls need root: test/namespaced/inpod-capture.)
import { fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, loadNetnsNative, SeqpacketServer, SeqpacketSocket, type SeqpacketMessage } from './weft-netns.js';

const native = loadNetnsNative();
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe.skipIf(native === undefined)('SOCK_SEQPACKET with SCM_RIGHTS (weft-netns.c)', () => {
  it('keeps packet boundaries and passes a file descriptor', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'weft-seqpacket-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'agent.sock');
    const got: SeqpacketMessage[] = [];
    let peer: SeqpacketSocket | undefined;
    let closed = false;
    const arrived = new Promise<void>((resolve) => {
      const server = new SeqpacketServer(file, (fd) => {
        peer = new SeqpacketSocket(
          fd,
          (m) => {
            got.push(m);
            if (got.length === 2) resolve();
          },
          () => (closed = true),
        );
      });
      cleanups.push(() => server.close());
    });
    const client = SeqpacketSocket.connect(file, () => undefined, () => undefined);
    const passed = openSync(dir, 'r');
    client.send(Buffer.from('first'), [passed]);
    client.send(Buffer.from('second'));
    await arrived;
    expect(got.map((m) => m.data.toString())).toEqual(['first', 'second']);
    const [fd] = got[0]?.fds ?? [];
    expect(fd).toBeGreaterThan(2);
    expect(fd).not.toBe(passed);
    expect(fstatSync(fd as number).ino).toBe(fstatSync(passed).ino);
    expect(got[1]?.fds).toEqual([]);
    closeFd(fd as number);
    closeFd(passed);
    client.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(true);
    peer?.close();
  });

  it('refuses to connect where nothing listens, with the errno', () => {
    expect(() => SeqpacketSocket.connect(path.join(tmpdir(), `weft-none-${process.pid}.sock`), () => undefined, () => undefined)).toThrow(/ENOENT|No such file/);
  });
});
