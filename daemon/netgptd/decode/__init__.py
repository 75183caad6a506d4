"""Pure frame decoding: link, network and transport layers and simple tunnels."""
