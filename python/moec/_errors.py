class MoecError(RuntimeError):
    """An error moec reported: the message is moec's own (for a `.moe` source `file:line:col: error: …`,
    for a weight file the tensor and the byte offset)."""
