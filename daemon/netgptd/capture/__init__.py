"""Capture sources: files, pyshark and dumpcap live capture, all yielding PacketRecord."""
