"""attrlib."""
