"""Privacy and lifecycle (#13): erase a caller or a conversation from every store."""
