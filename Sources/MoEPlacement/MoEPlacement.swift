// MoEPlacement
