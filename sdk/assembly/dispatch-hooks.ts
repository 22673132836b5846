// Late-bound dispatch for callbacks only some plugins need. exports.ts calls through these hooks; the modules that
// start callouts and foreign calls install them on first use, so a plugin that never makes such a call links none of
// their code (it keeps small plugins well under the size budget).
import { Context } from "./context";

export type HttpCallResponseHook = (token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32) => void;
export type ForeignResultHook = (functionId: u32, size: u32) => void;
export type ForgetHook = (ctx: Context) => void;

let httpCallResponseHook: HttpCallResponseHook | null = null;
let foreignResultHook: ForeignResultHook | null = null;
let forgetHttp: ForgetHook | null = null;
let forgetForeign: ForgetHook | null = null;

export function installHttpCallHooks(onResponse: HttpCallResponseHook, forget: ForgetHook): void {
  httpCallResponseHook = onResponse;
  forgetHttp = forget;
}

export function installForeignHooks(onResult: ForeignResultHook, forget: ForgetHook): void {
  foreignResultHook = onResult;
  forgetForeign = forget;
}

export function runHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  const h = httpCallResponseHook;
  if (h !== null) h(token, numHeaders, bodySize, numTrailers);
}

export function runForeignResult(functionId: u32, size: u32): void {
  const h = foreignResultHook;
  if (h !== null) h(functionId, size);
}

export function runForget(ctx: Context): void {
  const a = forgetHttp;
  if (a !== null) a(ctx);
  const b = forgetForeign;
  if (b !== null) b(ctx);
}
