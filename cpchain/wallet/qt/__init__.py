"""The Qt desktop wallet (`bin/wallet`): PyQt5 pages over the headless wallet core.

- `app`: start-up: Qt application, qasync loop, Twisted's asyncio reactor on it, the window;
- `worker`: the one way pages call the core: off the GUI thread, results back on it;
- `session`: the unlocked wallet (or none) and the core objects built on it;
- `window`: the main window: header, error banner, navigation, pages;
- `pages`: one module per page (accounts, wallet, market, product).

Pages never call the core on the GUI thread (the core blocks, and parts of it run their own
asyncio loops): they hand calls to the `Worker` they were given, which is what lets the
tests build every page without running the reactor.
"""
