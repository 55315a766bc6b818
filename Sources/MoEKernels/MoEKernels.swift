// MoEKernels
