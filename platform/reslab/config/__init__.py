"""Configs: `schema` (the typed, frozen dataclasses), `load` (recipes + overrides → a validated
`Config`), `validate` (the cross-field rules). Import the module you need; this package
initialiser stays empty so that the schema can be imported from below without the loader."""
