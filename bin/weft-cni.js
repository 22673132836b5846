#!/usr/bin/env node
// The `weft-cni` command, as installed into node_modules/.bin: runs the built CNI plugin (npm run build writes dist/).
import '../dist/cni/main.js';
