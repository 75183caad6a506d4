"""Traffic windows and trend forecasting (the edge LLM's first by-product)."""
