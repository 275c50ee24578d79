"""Federation: pulling from peer nodes, with their ledgers checked on every sync."""
