"""The ops the sidecar serves, one module per family. Each module exports
`OPS`, its op table (op name → function of the `Host` and the request
envelope); `server.py` builds the dispatch table as their union, in one
place. `host.py` says what an op may use of the sidecar serving it."""
