// Every guest entry point the host calls (proxy-wasm 0.2.1 names). A plugin re-exports this module from its entry file:
// `export * from "@weft/sdk/assembly/exports";` — or exports-headers-only.ts when it never reads bodies or trailers.
export * from "./exports-headers-only";
export * from "./exports-bodies";
