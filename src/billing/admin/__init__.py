"""Admin panel, admin accounts and the audit log."""
