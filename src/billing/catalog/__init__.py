"""Tariffs: the catalogue viewers buy from, its price history, role sync from Auth."""
