// MoEC: moec as a C library (libMoEC), for programs and languages that are not Swift; the Python
// package in `python/` is one.
//
// - `moec.h` (in the `CMoEC` target, `Sources/CMoEC/include/`) declares the API; this target
//   exports its functions with `@_cdecl`, over the types the header declares.
// - `CAPIEntryPoints.swift`: the exported functions, each a thin shell that turns every error
//   (thrown or found) into a message for the caller.
// - `PlanRegistry.swift`: plan handles. A handle is a number, never a pointer, so a freed or
//   made-up handle is an error and not a crash; a run keeps its plan alive while it goes on.
// - `LoadedPlan.swift`: one plan: its runner, its input and output types, the statistics of its
//   runs, and how a run checks caller buffers before it touches them.
//
// The library never calls `exit` and never lets a Swift precondition see caller input: every
// value from the caller is checked here first.
