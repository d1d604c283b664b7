"""The server process: `scimledger serve` runs the HTTP app in one or more worker processes
(service/server/serve.py). It composes http/ and runtime/; the CLI hands `serve` to it."""
