import Testing
@testable import MoEKernels
