import Foundation

/// What the C API has handed out by handle: plans, and the sequences made for them. A handle is
/// a number that counts up from 1 and is never reused, so a freed handle, 0 or a made-up number
/// is told apart and reported, never dereferenced. A run holds its `LoadedPlan` while it goes on:
/// `moec_free` during a run only drops the registry's reference.
final class HandleRegistry<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64: Value] = [:]
    private var nextHandle: UInt64 = 1
    /// What a handle names ("plan"), and the function that frees one.
    private let noun: String, freeFunction: String

    init(noun: String, freeFunction: String) {
        self.noun = noun
        self.freeFunction = freeFunction
    }

    func add(_ value: Value) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let handle = nextHandle
        nextHandle += 1
        values[handle] = value
        return handle
    }

    /// The value of `handle`, or an error that says why there is none.
    func value(_ handle: UInt64) throws(CAPIError) -> Value {
        lock.lock()
        defer { lock.unlock() }
        if let v = values[handle] { return v }
        throw CAPIError(unknownHandleMessage(handle))
    }

    func remove(_ handle: UInt64) throws(CAPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard values.removeValue(forKey: handle) != nil else { throw CAPIError(unknownHandleMessage(handle)) }
    }

    /// Under `lock`.
    private func unknownHandleMessage(_ handle: UInt64) -> String {
        if handle == 0 { return "\(noun) 0 is not a \(noun) (the call that made it failed: read its error)" }
        if handle < nextHandle { return "\(noun) \(handle) was freed (\(freeFunction)) and cannot be used any more" }
        return "\(noun) \(handle) is not a \(noun) this library made"
    }
}

/// The plans of the C API (`moec_plan` handles).
enum PlanRegistry {
    static let handles = HandleRegistry<LoadedPlan>(noun: "plan", freeFunction: "moec_free")
    static func add(_ plan: LoadedPlan) -> UInt64 { handles.add(plan) }
    static func plan(_ handle: UInt64) throws(CAPIError) -> LoadedPlan { try handles.value(handle) }
    static func remove(_ handle: UInt64) throws(CAPIError) { try handles.remove(handle) }
}

/// The sequences of the C API (`moec_sequence` handles): each holds its plan, so freeing the
/// plan's handle first leaves the sequence usable.
enum SequenceRegistry {
    static let handles = HandleRegistry<LoadedSequence>(noun: "sequence", freeFunction: "moec_sequence_free")
}

/// An error for the caller: its message is what the C API returns.
struct CAPIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
