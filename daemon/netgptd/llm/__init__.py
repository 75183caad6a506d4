"""The edge LLM's runtime: small causal LMs trained by this project, loaded from local folders only."""
