"""The engine server (`medplib-studio serve`) and the wire format its clients share.

The server (`app.create_app`) puts the engines of `medplib_core.engines` behind an HTTP API
with the same nouns as `engines.base` and `medplib.chat`: images are uploaded once under
their content hash, encoded, prompted; conversations are asked questions whose answers stream
token by token. The client is `medplib_core.engines.remote`, which needs neither torch nor
FastAPI; it shares only `wire` (numpy, zlib, base64) with this package.

Importing this package is cheap: the server modules load only when they are imported.
"""

from __future__ import annotations

API_VERSION = "1"  # bump on any incompatible change of the HTTP API (paths, bodies, events)
DEFAULT_PORT = 8765
TOKEN_ENV = "MEDPLIB_SERVER_TOKEN"
CA_ENV = "MEDPLIB_SERVER_CA"  # a CA bundle (or the server's self-signed cert) for https
API_HEADER = "X-Medplib-API"
CLIENT_HEADER = "X-Medplib-Client"
