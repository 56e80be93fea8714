"""Configs: `schema` (the typed, frozen dataclasses), `load` (recipes + overrides → a validated
`Config`), `validate` (the cross-field rules). Import the module you need; this package
initialiser imports nothing, so that the schema can be imported from below without the loader."""

# The modules other packages use (imported by their dotted names; nothing is imported here).
__all__ = ["domain", "load", "recipes", "schema", "validate"]
