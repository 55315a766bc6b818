import Foundation

/// The plans the C API has handed out, by handle. A handle is a number that counts up from 1 and
/// is never reused, so a freed handle, 0 or a made-up number is told apart and reported, never
/// dereferenced. A run holds its `LoadedPlan` while it goes on: `moec_free` during a run only
/// drops the registry's reference.
enum PlanRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var plans: [UInt64: LoadedPlan] = [:]
    nonisolated(unsafe) private static var nextHandle: UInt64 = 1

    static func add(_ plan: LoadedPlan) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let handle = nextHandle
        nextHandle += 1
        plans[handle] = plan
        return handle
    }

    /// The plan of `handle`, or an error that says why there is none.
    static func plan(_ handle: UInt64) throws(CAPIError) -> LoadedPlan {
        lock.lock()
        defer { lock.unlock() }
        if let p = plans[handle] { return p }
        throw CAPIError(unknownHandleMessage(handle))
    }

    static func remove(_ handle: UInt64) throws(CAPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard plans.removeValue(forKey: handle) != nil else { throw CAPIError(unknownHandleMessage(handle)) }
    }

    /// Under `lock`.
    private static func unknownHandleMessage(_ handle: UInt64) -> String {
        if handle == 0 { return "plan 0 is not a plan (the call that made it failed: read its error)" }
        if handle < nextHandle { return "plan \(handle) was freed (moec_free) and cannot be used any more" }
        return "plan \(handle) is not a plan this library made"
    }
}

/// An error for the caller: its message is what the C API returns.
struct CAPIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
