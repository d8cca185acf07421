"""Container networking: IPAM, the bridge driver, network namespaces, published ports and embedded DNS."""
