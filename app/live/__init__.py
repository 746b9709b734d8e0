"""Live updates: GraphQL subscriptions fed by one Redis pattern subscription per API process.

hub.py        the Redis subscription, coalescing, direct writes to waiting subscribers,
              bounded per-subscriber mailboxes, resync
execution.py  one GraphQL execution and encoding per shared event and distinct operation
service.py    snapshots and access checks (MongoDB is the system of record)
access.py     access re-checked while subscriptions run (``labelstream:access`` events, periodic
              re-checks): a revoked key or a lost membership or role ends the operation
graphql.py    the Subscription type: labelingTaskProgress, labelingTasks, reviewQueue
transport.py  WebSocket protocol handlers: auth in connection_init, server pings, typed caps
"""
