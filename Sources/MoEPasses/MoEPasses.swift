// MoEPasses
