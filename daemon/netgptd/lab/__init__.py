"""Traffic lab: labelled traffic from real tools on loopback addresses."""
