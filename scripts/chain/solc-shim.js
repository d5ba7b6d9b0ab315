#!/usr/bin/env node
// A `solc`-compatible command line over npm `solc` (the official wasm build), for
// py-solc-x on machines without a native solc. Supports `--version` and
// `--standard-json` (input on stdin, output JSON only on stdout); other flags are ignored.
// PDASH_SOLC_MODULE names another npm solc to use (bench/gas.py's 0.4.24 baseline).
'use strict';
const solc = require(process.env.PDASH_SOLC_MODULE || 'solc');
// solcjs before 0.5 exposes standard JSON as compileStandardWrapper.
const compile = solc.compileStandardWrapper || solc.compile;

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  process.stdout.write(compile(Buffer.concat(chunks).toString('utf8')));
});
