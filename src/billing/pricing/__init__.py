"""Pure pricing core: discount rules, quotes and promo-code strings (no database, no I/O)."""
