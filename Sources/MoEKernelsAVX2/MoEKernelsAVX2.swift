// MoEKernelsAVX2
