"""Policy: who may receive what. The release decision and the one egress path."""
