// Promise.withResolvers (ES2024) for node 20: js-ipfs 0.66's dependencies call it.
// Loaded with NODE_OPTIONS=--require by the storage tests before `jsipfs` starts.
'use strict';
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
