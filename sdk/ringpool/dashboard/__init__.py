"""ringpool's web dashboard (``pip install 'ringpool[dashboard]'``; ``ringpool-dashboard``).

An ASGI app (Starlette, server-rendered Jinja templates, a little plain JS) that reads
ZooKeeper, Redis and the nodes' Status RPC, and acts through the state store and
``ringpool.ops``: overview (nodes, the ring, throughput and latency, live), tasks,
dead letters (browse, replay, purge) and the cluster config. ``server.serve`` runs
it; ``app.create_app`` builds it around open connections.
"""
