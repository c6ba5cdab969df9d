"""The node agent: runtime, images, network and volumes of one node."""
