"""People and their credentials: users, organizations, roles, sessions and access tokens."""
