// The prefetch hint lives in the header (an inline function); this file gives the target the
// compilation unit SwiftPM requires.
#include "MoEPrefetch.h"
