// MoEIR
