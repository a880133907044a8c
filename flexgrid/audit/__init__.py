"""The auditor's tools: source verification of the deployed contracts (and, with the oracle,
re-verification of clearing results from on-chain data)."""
