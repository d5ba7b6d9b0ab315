"""Per-user data a wallet syncs across machines: uploaded files, purchased files, bookmarks,
and a version number bumped on every change. Always the caller's own rows."""
