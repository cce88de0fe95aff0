"""Domain: entities and storage schema, configuration, standards, rules and lifecycles."""
