/** An Error shaped like Node's own socket errors (code, errno, syscall) for a negative errno or libuv status code. */
import { getSystemErrorName } from 'node:util';

export function errnoError(code: number, syscall: string): Error {
  let name: string;
  try {
    name = getSystemErrorName(code);
  } catch {
    name = `E${-code}`;
  }
  return Object.assign(new Error(`${syscall} ${name}`), { code: name, errno: code, syscall });
}
