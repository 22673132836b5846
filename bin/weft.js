#!/usr/bin/env node
// The `weft` command, as installed into node_modules/.bin: runs the built CLI (npm run build writes dist/).
import '../dist/runtime/cli.js';
