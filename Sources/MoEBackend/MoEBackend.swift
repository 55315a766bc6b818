// MoEBackend
