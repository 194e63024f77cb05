#!/usr/bin/env node
// Builds a Gatehouse plugin written in JavaScript into a WebAssembly component
// with componentize-js (the StarlingMonkey engine), against the project's WIT.
//
//   node build.mjs [plugin.js] [out.wasm]     (WIT from $GATEHOUSE_WIT or ./wit)
//
// The WIT is handed over as text rather than as a path: componentize-js's
// bundled tools run sandboxed and cannot open files outside their own directory
// (the `jco componentize` failure noted in WASM-NOTES). The `http` and
// `fetch-event` features are left out: a plugin has no sockets, and with them
// the component would import `wasi:http`, which the gateway does not provide.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { componentize } from '@bytecodealliance/componentize-js';

const source = resolve(process.argv[2] ?? 'plugin.js');
const output = resolve(process.argv[3] ?? 'plugin.wasm');
const witDir = resolve(process.env.GATEHOUSE_WIT ?? 'wit');

const witFiles = readdirSync(witDir).filter((f) => f.endsWith('.wit')).sort();
if (witFiles.length !== 1) {
  console.error(`build.mjs: expected exactly one .wit file in ${witDir}, found ${witFiles.length}`);
  process.exit(1);
}
const { component } = await componentize(readFileSync(source, 'utf8'), {
  witWorld: readFileSync(join(witDir, witFiles[0]), 'utf8'),
  worldName: 'plugin',
  disableFeatures: ['http', 'fetch-event'],
});
writeFileSync(output, component);
console.log(`wrote ${output}`);
