// MoEIO
