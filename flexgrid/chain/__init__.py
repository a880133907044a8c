"""The chain layer: a managed anvil, deployment from shipped artifacts, typed market calls, event indexing."""
