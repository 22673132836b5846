#!/usr/bin/env node
/** weft-cni: the CNI plugin (CNI_COMMAND + JSON on stdin), and the node commands loaded on demand from node-cli.ts. */
import { setLogSink } from '../runtime/log.js';
import { runCni } from './cni-command.js';
import { WEFT_CNI_USAGE } from './cni-constants.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<number> {
  // stdout carries the CNI protocol; logs go to stderr only.
  setLogSink((line) => process.stderr.write(line + '\n'));
  const args = process.argv.slice(2);
  if (args[0] === 'node') {
    try {
      // Node commands load zod, yaml and the planners; the per-pod plugin path never does.
      const { nodeCommand } = await import('./node-cli.js');
      return await nodeCommand(args.slice(1));
    } catch (err) {
      process.stderr.write(`weft-cni node ${args[1] ?? ''}: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  if (args[0] === 'agent') {
    try {
      const { agentCommand } = await import('./node-cli.js');
      return await agentCommand(args.slice(1));
    } catch (err) {
      process.stderr.write(`weft-cni agent: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  if (args[0] === 'install' || args[0] === 'uninstall') {
    const { installCommand } = await import('./node-cli.js');
    return await installCommand(args);
  }
  if (args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(WEFT_CNI_USAGE + '\n');
    return 0;
  }
  const stdin = process.env.CNI_COMMAND === 'VERSION' ? '' : await readStdin();
  const outcome = await runCni(process.env, stdin);
  if (outcome.stdout !== '') process.stdout.write(outcome.stdout + '\n');
  return outcome.exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`weft-cni: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
