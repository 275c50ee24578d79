"""The analyst console: the node's web interface under ``/ui`` (docs/console.md)."""
