"""Stores own durability; see :mod:`botstate.stores.base`."""
