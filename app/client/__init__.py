"""The ``labelstream`` command as an API client (like ``gh`` or ``kubectl``).

Everything here talks to a Labelstream server over its public API only (GraphQL over HTTP,
``graphql-transport-ws`` over WebSocket, the export download route); it imports nothing of the
server, so it works the same against a local ``labelstream up`` and a remote deployment.

config.py     where the server URL and API key live (the user's config file, mode 0600)
api.py        GraphQL over HTTP: queries, mutations' typed errors, multipart uploads, downloads
live.py       subscriptions over WebSocket (graphql-transport-ws)
sources.py    reading a folder, a URL list, a COCO / YOLO / VOC dataset into neutral items
importer.py   sending those items as inputs and annotations, resumably (a state file)
commands/     the Typer commands: login, logout, whoami, keys, import, tasks, versions, export
"""
