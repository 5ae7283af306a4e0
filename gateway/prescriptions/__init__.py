"""The e-prescription: its identifier, and (later) the registry and its life cycle."""
