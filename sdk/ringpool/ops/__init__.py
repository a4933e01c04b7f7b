"""What operators do to a cluster, shared by ``taskctl`` and the dashboard: selecting,
replaying and purging dead-lettered tasks. It uses the state store and the client."""
