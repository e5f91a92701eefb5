"""The aws target's engine: the mirror's description (config), plans of AWS operations, guardrails."""
