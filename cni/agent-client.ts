/** weft-cni's side of the plugin-event socket: one JSON request line to the node agent over a unix stream socket, one JSON answer back (istio-cni's plugin does the same over HTTP on pluginevent.sock). */
import net from 'node:net';
import { WeftError } from '../runtime/errors.js';

export type AgentRequest =
  | { op: 'add'; uid: string; name: string; namespace: string; serviceAccount: string; netns: string }
  | { op: 'del'; uid: string };

export interface AgentAnswer {
  ok: boolean;
  error?: string;
}

/** Sends one request; rejects when the agent is unreachable, answers with an error, or stays silent past `timeoutMs`. */
export function callAgent(socketPath: string, req: AgentRequest, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffered = '';
    const timer = setTimeout(() => done(new WeftError('WEFT_ERR_CNI', `the weft node agent at ${socketPath} did not confirm ${req.op} of pod ${req.uid} within ${timeoutMs} ms (is the runtime connected?)`)), timeoutMs);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err === undefined) resolve();
      else reject(err);
    };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(req) + '\n'));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      let answer: AgentAnswer;
      try {
        answer = JSON.parse(buffered.slice(0, nl)) as AgentAnswer;
      } catch {
        return done(new WeftError('WEFT_ERR_CNI', `the weft node agent at ${socketPath} answered something that is not JSON`));
      }
      done(answer.ok ? undefined : new WeftError('WEFT_ERR_CNI', `the weft runtime refused pod ${req.uid}: ${answer.error ?? 'no reason given'}`));
    });
    socket.on('error', (err) => done(new WeftError('WEFT_ERR_CNI', `cannot reach the weft node agent at ${socketPath}: ${err.message} (is \`weft-cni agent\` running?)`, { cause: err })));
    socket.on('close', () => done(new WeftError('WEFT_ERR_CNI', `the weft node agent at ${socketPath} closed the connection without answering`)));
  });
}
