"""Export of the original networks and of PCSR with its routing inside the graph (ONNX, torch.export)."""
